"""Settings: one frozen object, built from the environment in one place."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .store.topology import parse_redis_url

T = TypeVar("T")


class ConfigError(Exception):
    """A setting is malformed; the message names the variable."""


def _issuer(raw: str) -> str:
    # The same rules as a request's issuer: it becomes the issuer of enrollments.
    if len(raw.encode()) > 64 or not raw.isprintable() or ":" in raw:
        raise ValueError("must be at most 64 bytes of printable text without ':'")
    return raw


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _listen(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("must be host:port, e.g. 127.0.0.1:50051 or [::]:50051")
    return raw


def _redis_url(raw: str) -> str:
    parse_redis_url(raw)  # ValueError names what is wrong (forms: docs/reliability.md)
    return raw


class Environment(enum.Enum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:50051"
    redis_url: str | None = None  # None: start an embedded redis-server
    data_dir: Path = Path("var")
    issuer: str = "totpd"
    keys_file: Path | None = None  # None: <data_dir>/keys.json
    env: Environment = Environment.DEVELOPMENT
    reflection: bool = True
    # Caller authentication (docs/security.md): TLS, mutual TLS, the callers file.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None  # set: every client needs a certificate
    callers_file: Path | None = None  # None: no caller authentication (development only)
    allow_evicting_redis: bool = False  # start even if Redis may evict totpd's keys
    key_prefix: str = "totpd"
    redis_timeout: float = 1.0
    # Replicas that must acknowledge a decisive write (docs/reliability.md); 0: don't wait.
    redis_min_replicas_ack: int = 0
    activation_max_attempts: int = 5
    verify_window: int = 1
    lockout_threshold: int = 5
    lockout_base_seconds: float = 60.0
    lockout_max_seconds: float = 3600.0
    lockout_permanent_after: int = 100
    events_maxlen: int = 100_000
    shutdown_grace: float = 10.0
    log_level: str = "INFO"
    workers: int = 1  # server processes sharing the port (SO_REUSEPORT)
    metrics_listen: str = "127.0.0.1:9464"  # Prometheus /metrics; "": no endpoint
    # Not from the environment: whether this process counts expired enrollments (with
    # TOTPD_WORKERS > 1 only worker 0 does, else each expiry would count once per worker).
    count_expiries: bool = True

    @property
    def production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def resolved_keys_file(self) -> Path:
        return self.keys_file or self.data_dir / "keys.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str, parse: Callable[[str], T], default: T) -> T:
            raw = env.get(f"TOTPD_{name}")
            if raw is None or raw == "":
                return default
            try:
                return parse(raw)
            except ValueError as exc:
                raise ConfigError(f"TOTPD_{name}={raw!r}: {exc}") from exc

        def ranged(low: float, high: float, parse: Callable[[str], T]) -> Callable[[str], T]:
            def check(raw: str) -> T:
                value = parse(raw)
                if not low <= value <= high:  # type: ignore[operator]
                    raise ValueError(f"must be between {low} and {high}")
                return value

            return check

        def boolean(raw: str) -> bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("must be true or false")

        d = cls()
        environment = get("ENV", Environment, d.env)
        return cls(
            listen=get("LISTEN", _listen, d.listen),
            redis_url=get("REDIS_URL", _redis_url, d.redis_url),
            data_dir=get("DATA_DIR", Path, d.data_dir),
            issuer=get("ISSUER", _issuer, d.issuer),
            keys_file=get("KEYS_FILE", Path, d.keys_file),
            env=environment,
            # Reflection helps people with grpcurl; production turns it on explicitly.
            reflection=get("REFLECTION", boolean, environment is Environment.DEVELOPMENT),
            tls_cert_file=get("TLS_CERT_FILE", Path, d.tls_cert_file),
            tls_key_file=get("TLS_KEY_FILE", Path, d.tls_key_file),
            tls_client_ca_file=get("TLS_CLIENT_CA_FILE", Path, d.tls_client_ca_file),
            callers_file=get("CALLERS_FILE", Path, d.callers_file),
            allow_evicting_redis=get("ALLOW_EVICTING_REDIS", boolean, d.allow_evicting_redis),
            key_prefix=get("KEY_PREFIX", str, d.key_prefix),
            redis_timeout=get("REDIS_TIMEOUT_SECONDS", ranged(0.01, 60, float), d.redis_timeout),
            redis_min_replicas_ack=get(
                "REDIS_MIN_REPLICAS_ACK", ranged(0, 16, int), d.redis_min_replicas_ack
            ),
            activation_max_attempts=get(
                "ACTIVATION_MAX_ATTEMPTS", ranged(1, 100, int), d.activation_max_attempts
            ),
            verify_window=get("VERIFY_WINDOW", ranged(0, 2, int), d.verify_window),
            lockout_threshold=get("LOCKOUT_THRESHOLD", ranged(1, 100, int), d.lockout_threshold),
            lockout_base_seconds=get(
                "LOCKOUT_BASE_SECONDS", ranged(1, 86400, float), d.lockout_base_seconds
            ),
            lockout_max_seconds=get(
                "LOCKOUT_MAX_SECONDS", ranged(1, 86400, float), d.lockout_max_seconds
            ),
            lockout_permanent_after=get(
                "LOCKOUT_PERMANENT_AFTER", ranged(1, 100, int), d.lockout_permanent_after
            ),
            events_maxlen=get("EVENTS_MAXLEN", ranged(1, 10**9, int), d.events_maxlen),
            shutdown_grace=get("SHUTDOWN_GRACE_SECONDS", ranged(0, 600, float), d.shutdown_grace),
            log_level=get("LOG_LEVEL", _log_level, d.log_level),
            workers=get("WORKERS", ranged(1, 64, int), d.workers),
            # Set but empty turns the endpoint off (get() would read it as unset).
            metrics_listen=""
            if "TOTPD_METRICS_LISTEN" in env and env["TOTPD_METRICS_LISTEN"] == ""
            else get("METRICS_LISTEN", _listen, d.metrics_listen),
        )
