"""The composition root: settings -> keys -> Redis -> store -> service -> server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

from . import qr
from .api.server import (
    RPC_NAMES,
    DrainingHealthServicer,
    ServerTls,
    create_server,
    health_tracking,
)
from .callers import Callers
from .config import Settings
from .embedded_redis import EmbeddedRedis
from .keyring import Keyring, KeyringError
from .metrics import Metrics, serve_metrics
from .model import LockoutPolicy
from .service import Policy, TotpService
from .store.expiry import ExpiryListener
from .store.redis_store import RedisStore, connect_any

log = logging.getLogger("totpd")


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


class StartupError(Exception):
    """The settings would run the server unsafely, or its Redis could lose data."""


def _read(path: Path, variable: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StartupError(f"{variable}: cannot read {path}: {exc.strerror}") from exc


def load_security(settings: Settings) -> tuple[ServerTls | None, Callers | None]:
    """TLS material and the callers file; refuses what would serve production unguarded."""
    tls = None
    if settings.tls_cert_file or settings.tls_key_file:
        if not (settings.tls_cert_file and settings.tls_key_file):
            raise StartupError("TOTPD_TLS_CERT_FILE and TOTPD_TLS_KEY_FILE are set together")
        tls = ServerTls(
            cert_chain=_read(settings.tls_cert_file, "TOTPD_TLS_CERT_FILE"),
            private_key=_read(settings.tls_key_file, "TOTPD_TLS_KEY_FILE"),
            client_ca=_read(settings.tls_client_ca_file, "TOTPD_TLS_CLIENT_CA_FILE")
            if settings.tls_client_ca_file
            else None,
        )
    elif settings.tls_client_ca_file:
        raise StartupError("TOTPD_TLS_CLIENT_CA_FILE needs TOTPD_TLS_CERT_FILE and _KEY_FILE")
    callers = Callers.load(settings.callers_file, RPC_NAMES) if settings.callers_file else None
    if callers is None and settings.production:
        raise StartupError(
            "production needs caller authentication: set TOTPD_CALLERS_FILE "
            "(see docs/security.md); refusing to serve every user's factors to anyone"
        )
    if callers is not None and callers.uses_tls and (tls is None or tls.client_ca is None):
        log.warning(
            "the callers file lists tls_identities, but without TOTPD_TLS_CLIENT_CA_FILE no "
            "client certificate is verified: those callers cannot authenticate"
        )
    return tls, callers


def _warn_if_open(settings: Settings, tls: ServerTls | None, callers: Callers | None) -> None:
    if callers is None:
        log.warning(
            "DEVELOPMENT mode: NO CALLER AUTHENTICATION%s. Anyone who reaches this port can "
            "enroll, verify and delete the factor of any user. Production refuses to start "
            "like this: set TOTPD_CALLERS_FILE (docs/security.md).",
            "" if tls and tls.client_ca else " and plaintext gRPC" if tls is None else "",
        )
    elif tls is None:
        log.warning(
            "plaintext gRPC: bearer tokens cross the network unencrypted unless a "
            "mesh sidecar terminates TLS on this host"
        )


async def check_eviction_policy(store: RedisStore, settings: Settings) -> None:
    """Refuse a Redis that may evict keys: an evicted lockout or replay step would let
    an attacker guess again, an evicted factor would lock its user out."""
    policy = await store.eviction_policy()
    if policy == "noeviction":
        return
    if settings.allow_evicting_redis:
        log.warning(
            "Redis maxmemory-policy is %r: keys may be evicted (allowed by "
            "TOTPD_ALLOW_EVICTING_REDIS)",
            policy,
        )
        return
    raise StartupError(
        f"Redis maxmemory-policy is {policy!r}: it may evict totpd's keys (lockouts, "
        "replay protection, factors). Set it to noeviction, or override with "
        "TOTPD_ALLOW_EVICTING_REDIS=true"
    )


def start_counting_expiries(
    store: RedisStore, settings: Settings, metrics: Metrics
) -> ExpiryListener | None:
    """Count pending enrollments that expire unactivated (totpd_enrollments_expired_total)
    in a background task, if this process is the one of its group that does and metrics
    are served at all; the listener never raises into serve()."""
    if not settings.count_expiries or not (settings.metrics_listen or settings.workers > 1):
        return None
    listener = store.expiry_listener(metrics.enrollment_expired)
    listener.start()
    return listener


async def serve(settings: Settings) -> None:
    keyring = load_keyring(settings)
    tls, callers = load_security(settings)
    metrics = Metrics()  # TOTPD_WORKERS > 1: workers count, the parent serves (metrics.py)
    with redis_url(settings) as url, serve_metrics(settings.metrics_listen, metrics.registry):
        store = RedisStore(
            connect_any(url, settings.redis_timeout),
            settings.key_prefix,
            settings.events_maxlen,
            # WAIT's own timeout stays under the socket timeout that its reply must beat.
            min_replicas_ack=settings.redis_min_replicas_ack,
            replica_ack_timeout=settings.redis_timeout / 2,
        )
        store.observe_call = metrics.store_call
        try:
            await check_eviction_policy(store, settings)
        except BaseException:
            await store.close()
            raise
        service = TotpService(store, keyring, policy_of(settings), count_event=metrics.event)
        health_servicer = DrainingHealthServicer()
        server, port = create_server(
            service,
            settings.listen,
            reflection_enabled=settings.reflection,
            health_servicer=health_servicer,
            tls=tls,
            callers=callers,
            observe_rpc=metrics.rpc,
            rpc_started=metrics.rpc_started,
        )
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        expiries = start_counting_expiries(store, settings, metrics)
        async with health_tracking(health_servicer, store.ping):
            qr.prepare_usual_versions()
            await server.start()
            # What exists now lives as long as the process (gRPC, descriptors, validator,
            # scripts, QR tables): keep it out of every later collection. A full one over
            # it takes tens of milliseconds, a stall of every call in flight.
            gc.freeze()
            host = settings.listen.rsplit(":", 1)[0]
            _warn_if_open(settings, tls, callers)
            log.info(
                "totpd listening on %s:%d (env=%s, reflection=%s, tls=%s, callers=%s)",
                host,
                port,
                settings.env.value,
                "on" if settings.reflection else "off",
                "off" if tls is None else "mutual" if tls.client_ca else "server",
                ",".join(callers.names) if callers else "ANYONE",
            )
            await stopping.wait()
            log.info("shutting down: NOT_SERVING, finishing in-flight calls")
        # health_tracking has set NOT_SERVING; calls in flight get the grace period.
        await server.stop(settings.shutdown_grace)
        if expiries is not None:
            await expiries.close()
        await store.close()
    log.info("stopped")
