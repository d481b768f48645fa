"""``python -m totpd`` / ``totpd``: run the server with settings from the environment."""

from __future__ import annotations

import os
import sys

from .app import StartupError
from .callers import CallersError
from .config import ConfigError, Settings
from .embedded_redis import EmbeddedRedisError
from .errors import StoreUnavailable
from .keyring import KeyringError
from .logs import configure_logging
from .workers import run


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "rotate-keys":  # re-encrypt stored secrets under the primary key
        from .rotate import main as rotate_keys

        return rotate_keys(sys.argv[2:])
    if command == "hash-token":  # the callers-file entry of a bearer token
        from .callers import hash_token_main

        return hash_token_main()
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"totpd: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        return run(settings)  # TOTPD_WORKERS=N: N processes (totpd.workers)
    except (
        KeyringError,
        CallersError,
        StartupError,
        EmbeddedRedisError,
        StoreUnavailable,
        OSError,
    ) as exc:
        # The cause says why (e.g. CERTIFICATE_VERIFY_FAILED); redis-py's connection
        # errors name the host, never the password (tests/security/test_redis_tls.py).
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        print(f"totpd: cannot start: {exc}{cause}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
