"""The composition root: settings -> keys -> Redis -> store -> service -> server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Iterator

from grpc_health.v1 import health

from .api.server import create_server, health_tracking
from .config import Settings
from .embedded_redis import EmbeddedRedis
from .keyring import Keyring, KeyringError
from .model import LockoutPolicy
from .service import Policy, TotpService
from .store.redis_store import RedisStore, connect

log = logging.getLogger("totpd")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


def load_keyring(settings: Settings) -> Keyring:
    path = settings.resolved_keys_file
    if path.exists():
        return Keyring.load(path)
    if settings.production:
        raise KeyringError(f"keys file {path} does not exist (required in production)")
    keyring = Keyring.generate()
    keyring.write_new(path)
    log.warning(
        "DEVELOPMENT: created a new keys file at %s. Anyone who reads it can decrypt every "
        "stored secret: in production, provision TOTPD_KEYS_FILE from a secret store.",
        path,
    )
    return keyring


def policy_of(settings: Settings) -> Policy:
    return Policy(
        default_issuer=settings.issuer,
        activation_max_attempts=settings.activation_max_attempts,
        verify_window=settings.verify_window,
        lockout=LockoutPolicy(
            threshold=settings.lockout_threshold,
            base_seconds=settings.lockout_base_seconds,
            max_seconds=settings.lockout_max_seconds,
            permanent_after=settings.lockout_permanent_after,
        ),
    )


@contextlib.contextmanager
def redis_url(settings: Settings) -> Iterator[str]:
    """The configured Redis, or an embedded one for as long as the block runs."""
    if settings.redis_url:
        yield settings.redis_url
        return
    with EmbeddedRedis(settings.data_dir / "redis") as embedded:
        log.info("started embedded redis-server (AOF in %s)", embedded.directory)
        yield embedded.url


async def serve(settings: Settings) -> None:
    keyring = load_keyring(settings)
    with redis_url(settings) as url:
        store = RedisStore(
            connect(url, settings.redis_timeout), settings.key_prefix, settings.events_maxlen
        )
        service = TotpService(store, keyring, policy_of(settings))
        health_servicer = health.aio.HealthServicer()
        server, port = create_server(
            service,
            settings.listen,
            reflection_enabled=settings.reflection,
            health_servicer=health_servicer,
        )
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        async with health_tracking(health_servicer, store.ping):
            await server.start()
            host = settings.listen.rsplit(":", 1)[0]
            log.info(
                "totpd listening on %s:%d (env=%s, reflection=%s)",
                host,
                port,
                settings.env.value,
                "on" if settings.reflection else "off",
            )
            if not settings.production:
                log.warning("DEVELOPMENT mode: plaintext gRPC and no caller authentication")
            await stopping.wait()
            log.info("shutting down: NOT_SERVING, finishing in-flight calls")
        # health_tracking has set NOT_SERVING; calls in flight get the grace period.
        await server.stop(settings.shutdown_grace)
        await store.close()
    log.info("stopped")
