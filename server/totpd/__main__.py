"""``python -m totpd`` / ``totpd``: run the server with settings from the environment."""

from __future__ import annotations

import asyncio
import os
import sys

from .app import configure_logging, serve
from .config import ConfigError, Settings
from .embedded_redis import EmbeddedRedisError
from .keyring import KeyringError


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"totpd: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except (KeyringError, EmbeddedRedisError, OSError) as exc:
        print(f"totpd: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
