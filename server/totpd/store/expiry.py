"""Pending enrollments that expired unactivated, from Redis keyspace notifications.

Redis publishes ``__keyevent@<db>__:expired`` with the key's name when it expires a key,
if its ``notify-keyspace-events`` includes ``E`` (keyevent channels) and ``x`` (expired
events). The listener checks that setting on every server it listens to and, if a flag is
missing, adds it with CONFIG SET (keeping the others). Where CONFIG or PSUBSCRIBE is
refused (an ACL user without them, a managed Redis), it logs one warning and counts
nothing: a metric never stops the service.

Notifications are node-local: a single server (or Sentinel's current primary) needs one
subscription, a cluster one per primary. Replicas do not expire keys themselves (they
apply the primary's DEL), so they publish no ``expired`` events. When a connection drops
the listener starts over (re-reading the cluster's primaries) after a bounded backoff.
Notifications are fire-and-forget: expiries while no connection is subscribed are not
counted (the metric is a lower bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoPermissionError, ResponseError

from .keys import pending_key_pattern

log = logging.getLogger(__name__)

CHANNEL_PATTERN = "__keyevent@*__:expired"
REQUIRED_FLAGS = "Ex"
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
POLL_SECONDS = 1.0  # how long one read waits before the stop flag is looked at again


class _Refused(Exception):
    """The server will not let us subscribe: stop listening (no retry would help)."""


def notify_flags_with(current: str, required: str = REQUIRED_FLAGS) -> str | None:
    """``current`` notify-keyspace-events plus the missing ``required`` flags, or None if
    none is missing (``A`` is the alias of every event class, so it covers ``x``)."""
    missing = [f for f in required if f not in current and not (f == "x" and "A" in current)]
    return current + "".join(missing) if missing else None


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else value or ""


class ExpiryListener:
    """Calls ``on_expired()`` once for each pending enrollment of ``prefix`` that Redis
    expires, from ``start()`` to ``close()``."""

    def __init__(
        self, client: redis.Redis | RedisCluster, prefix: str, on_expired: Callable[[], None]
    ):
        self._client = client
        self._pending = re.compile(pending_key_pattern(prefix))
        self._on_expired = on_expired
        self._stopping = asyncio.Event()
        self._warned = False
        self._task: asyncio.Task[None] | None = None

    def matches(self, key: bytes | str) -> bool:
        return self._pending.fullmatch(_text(key)) is not None

    def start(self) -> None:
        """Run in a background task until ``close()``."""
        self._task = asyncio.create_task(self.run())

    async def close(self) -> None:
        # The flag as well as the cancellation: on Python 3.11 a cancellation that lands
        # inside redis-py's asyncio timeouts can be swallowed.
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _warn(self, state: str, reason: str) -> None:
        """The one warning of this process (``state``: "is" or "may be")."""
        if not self._warned:
            self._warned = True
            log.warning(
                "totpd_enrollments_expired_total %s unavailable: %s. It needs Redis "
                "notify-keyspace-events with E and x (set it, or allow totpd CONFIG) and "
                "PSUBSCRIBE on %s (docs/observability.md)",
                state,
                reason,
                CHANNEL_PATTERN,
            )

    async def run(self) -> None:
        """Listen until ``close()``; never raises (but CancelledError)."""
        delay = BACKOFF_START
        while not self._stopping.is_set():
            try:
                await self._listen_all()
                return  # stopped
            except _Refused as exc:
                self._warn("is", str(exc))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a metric must never stop serving
                if self._stopping.is_set():
                    return
                log.info(
                    "expiry listener: %s: %s; reconnecting in %.1fs",
                    type(exc).__name__,
                    exc,
                    delay,
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _listen_all(self) -> None:
        if not isinstance(self._client, RedisCluster):
            await self._listen(self._client)
            return
        await self._client.initialize()  # learn (or re-learn) the slot map and primaries
        clients = [_node_client(node) for node in self._client.get_primaries()]
        if not clients:
            raise ConnectionError("the cluster named no primaries")
        try:
            tasks = [asyncio.create_task(self._listen(c)) for c in clients]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error
        finally:
            for client in clients:
                await client.aclose()

    async def _ensure_notifications(self, client: redis.Redis) -> str | None:
        """Add E and x to the server's notify-keyspace-events if missing; why it could
        not (CONFIG refused), or None."""
        try:
            reply = await client.config_get("notify-keyspace-events")
            values = list(reply.values())
            current = _text(values[0]) if values else ""
            wanted = notify_flags_with(current)
            if wanted is not None:
                await client.config_set("notify-keyspace-events", wanted)
                log.info("set Redis notify-keyspace-events to %r (was %r)", wanted, current)
        except (NoPermissionError, ResponseError) as exc:
            # Refused (ACL, a managed Redis renaming CONFIG): the server may still have the
            # flags from its own configuration, so subscribe anyway.
            return f"cannot check or set notify-keyspace-events ({exc})"
        return None

    async def _listen(self, client: redis.Redis) -> None:
        config_refused = await self._ensure_notifications(client)
        async with client.pubsub() as pubsub:
            try:
                # A refusal (NOPERM) is the reply to PSUBSCRIBE: the first read gets it.
                await pubsub.psubscribe(CHANNEL_PATTERN)
                # Checks the flag as well as being cancelled: on Python 3.11 a cancellation
                # inside redis-py's timeouts can be swallowed (as in health_tracking).
                while not self._stopping.is_set():
                    message = await pubsub.get_message(timeout=POLL_SECONDS)
                    if message is None:
                        continue
                    kind = message.get("type")
                    if kind == "psubscribe" and config_refused:
                        # Subscribed, but whether Redis sends the events is unknown.
                        self._warn("may be", config_refused)
                    elif kind == "pmessage" and self.matches(message["data"]):
                        self._on_expired()
            except NoPermissionError as exc:
                reason = f"PSUBSCRIBE {CHANNEL_PATTERN} refused ({exc})"
                if config_refused:
                    reason = f"{config_refused}; {reason}"
                raise _Refused(reason) from exc


def _node_client(node: ClusterNode) -> redis.Redis:
    """A plain client for one cluster node, with the cluster client's connection options
    (auth, TLS, timeouts)."""
    pool = redis.ConnectionPool(
        connection_class=node.connection_class, max_connections=4, **node.connection_kwargs
    )
    return redis.Redis(connection_pool=pool)
