"""The Redis implementation of the store. It owns every key name and Lua script.

Each decision (activate, check a code, consume a recovery code) is one Lua script that
reads, decides and writes atomically, with every key in KEYS and the server's clock in
ARGV, so the outcome is the same through any number of totpd processes.

The same script appends the decision's audit events to the events stream (audit.lua), so
the two are kept together or not at all, in one command; so does the script that saves a
new enrollment (create.lua). Except on Redis Cluster: the stream is in another slot than
the user's keys, so there the store appends the events with XADDs of its own right after
the script, and a failed XADD is logged, not raised (the decision stands).
``RedisStore(events_in_scripts=...)`` says which; by default, the former unless the client
is a ``RedisCluster``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from importlib import resources
from typing import Any, NamedTuple, ParamSpec, TypeVar, cast
from urllib.parse import quote

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)

from ..errors import StoreUnavailable
from ..model import (
    ActivationOutcome,
    ActivationResult,
    ActiveRecord,
    Algorithm,
    CheckOutcome,
    CheckResult,
    Event,
    EventType,
    Lockout,
    LockoutPolicy,
    PendingRecord,
    SealedSecret,
    TotpParams,
    activation_events,
    check_events,
    creation_events,
)
from .expiry import ExpiryListener
from .keys import UserKeys, events
from .pipelining import PipeliningRedis
from .topology import RedisLocation, Topology, parse_redis_url

log = logging.getLogger(__name__)

P = ParamSpec("P")
_Hash = dict[bytes, bytes]  # a hash as read with decode_responses off
_Arg = bytes | str | int
Client = redis.Redis | RedisCluster  # what connect_any() returns and RedisStore takes
T = TypeVar("T")

# Redis answers that mean "not now" rather than "your command is wrong".
_TRANSIENT_REPLIES = (
    "OOM",
    "READONLY",
    "LOADING",
    "MASTERDOWN",
    "NOREPLICAS",
    "BUSY",
    "TRYAGAIN",
    "CLUSTERDOWN",
)
# redis-py strips the code off the replies it has a class for ("READONLY You can't write
# against a read only replica." -> ReadOnlyError("You can't ...")), so match those by
# class; and the cluster client's own "no node for this slot / gave up" errors.
_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    ReadOnlyError,
    OutOfMemoryError,
    TryAgainError,
    ClusterError,  # ClusterDownError, MasterDownError, "TTL exhausted"
    RedisClusterException,  # SlotNotCoveredError, "cannot be connected"
)
_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,
    *_TRANSIENT_ERRORS,
)


#: (operation, seconds, None or "unavailable:<reason>" / "error:<reason>"), called after
#: every store operation when set on the store (``RedisStore.observe_call``: metrics).
StoreObserver = Callable[[str, float, str | None], None]


def _transient_code(message: str) -> str | None:
    """The code of a transient reply, also when a script's ``redis.call`` got it: Redis 6
    wraps that one ("Error running script (call to f_...): @user_script:12: @user_script:
    12: -OOM command not allowed ..."), Redis 7 passes it on as it is."""
    if message.startswith("Error running script") and ": -" in message:
        message = message.rsplit(": -", 1)[1]
    return message.split(" ", 1)[0] if message.startswith(_TRANSIENT_REPLIES) else None


def _unavailable_on_redis_errors(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    operation = method.__name__

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        observe: StoreObserver | None = getattr(args[0], "observe_call", None) if args else None
        started = time.perf_counter()
        error: str | None = None
        try:
            return await method(*args, **kwargs)
        except _UNAVAILABLE_ERRORS as exc:
            error = f"unavailable:{type(exc).__name__}"
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
        except redis.ResponseError as exc:
            code = _transient_code(str(exc))
            if code is not None:
                error = f"unavailable:{code}"
                raise StoreUnavailable(f"redis: {code}") from exc
            error = f"error:{type(exc).__name__}"
            raise
        except StoreUnavailable:
            error = "unavailable:StoreUnavailable"
            raise
        except BaseException as exc:
            error = f"error:{type(exc).__name__}"
            raise
        finally:
            if observe is not None:
                observe(operation, time.perf_counter() - started, error)

    return wrapper


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _seconds(ms: bytes | str | int) -> float:
    return int(ms) / 1000


def _load_script(name: str) -> str:
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text()


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.2, base=0.02), 1, (redis.ConnectionError,))


def connect(url: str, timeout: float = 1.0, max_connections: int = 64) -> redis.Redis:
    """One client for the process: a bounded pool, timeouts, auto-pipelining of the request
    path's commands (``pipelining``: a pipelined command is never sent twice, as a script
    that timed out or lost its connection may have run already), and a single quick retry
    on a dropped connection for connecting and for the other, idempotent commands.

    ``url`` names one server or, as ``redis+sentinel://``, the primary Sentinel knows of;
    a cluster needs ``connect_cluster`` (``connect_any`` picks for you)."""
    location = parse_redis_url(url)
    if location.topology is Topology.CLUSTER:
        raise StoreUnavailable(
            "a redis+cluster:// URL needs a cluster client; a tool that walks keys "
            "(rotate-keys) runs once per primary, with that primary's redis:// URL"
        )
    if location.topology is Topology.SENTINEL:
        return _connect_sentinel(location, timeout, max_connections)
    return PipeliningRedis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=_retry(),
        max_connections=max_connections,
        health_check_interval=30,
    )


class _SentinelManagedRedis(PipeliningRedis):
    """The primary's client; closing it also closes the connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


def _connect_sentinel(location: RedisLocation, timeout: float, max_connections: int) -> redis.Redis:
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(location.nodes),
        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
    )
    # Every new connection asks a sentinel for the current primary (and checks it still
    # is one), so after a failover the pool reconnects to the promoted replica.
    primary = sentinels.master_for(
        location.primary_name,
        redis_class=_SentinelManagedRedis,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=_retry(),
        max_connections=max_connections,
        health_check_interval=30,
        username=location.username,
        password=location.password,
    )
    return cast(redis.Redis, primary)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def connect_cluster(url: str, timeout: float = 1.0, max_connections: int = 64) -> RedisCluster:
    """A Redis Cluster client from a ``redis+cluster://`` (or ``rediss+cluster://``) URL:
    the same timeouts as ``connect``; every seed node is a startup node, the client learns
    the slot map from them and follows MOVED/ASK.

    No retries: redis-py's cluster client and pipeline retry timeouts as well as dropped
    connections, whatever the Retry says, and a timed-out script may have run. A failed
    call is UNAVAILABLE and makes the client re-read the slot map for the next one."""
    location = parse_redis_url(url)
    if location.topology is not Topology.CLUSTER:
        raise ValueError("connect_cluster needs a redis+cluster:// or rediss+cluster:// URL")
    (host, port), *others = location.nodes
    auth = ""
    if location.username or location.password:
        auth = quote(location.username or "", safe="")
        if location.password is not None:
            auth += ":" + quote(location.password, safe="")
        auth += "@"
    scheme = "rediss" if location.tls else "redis"
    query = f"?{location.query}" if location.query else ""
    return RedisCluster.from_url(
        f"{scheme}://{auth}{_url_host(host)}:{port}{query}",
        startup_nodes=[ClusterNode(h, p) for h, p in others],
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
    )


def connect_any(url: str, timeout: float = 1.0, max_connections: int = 64) -> Client:
    """The client for any ``TOTPD_REDIS_URL`` form (docs/reliability.md)."""
    if parse_redis_url(url).topology is Topology.CLUSTER:
        return connect_cluster(url, timeout, max_connections)
    return connect(url, timeout, max_connections)


# -- record encoding ------------------------------------------------------------------
# A pending and an active hash share the factor's fields (keys.py names every field), so
# the activation script copies them over by name. Every field is short and the sealed
# secret is raw bytes, not base64: an active hash, its recovery codes included, then stays
# a compact ziplist (listpack) under Redis's default hash-max-ziplist-value of 64 bytes.


class _Factor(NamedTuple):
    """The factor's fields of a pending or an active hash, decoded."""

    user_id: str
    params: TotpParams
    issuer: str
    account_name: str
    secret: SealedSecret
    create_time: float


def _encode_params(params: TotpParams) -> str:
    return f"{params.algorithm.value}:{params.digits}:{params.period}"


@functools.lru_cache(maxsize=64)  # a handful of distinct values; TotpParams is frozen
def _decode_params(raw: bytes) -> TotpParams:
    algorithm, digits, period = raw.decode().split(":")
    return TotpParams(Algorithm(algorithm), int(digits), int(period))


def _encode_pending(record: PendingRecord) -> dict[str, _Arg]:
    return {
        # The factor's fields: activate.lua copies these to the active hash.
        "uid": record.user_id,
        "p": _encode_params(record.params),
        "iss": record.issuer,
        "acc": record.account_name,
        "kid": record.secret.key_id,
        "sec": record.secret.blob,
        "ct": _ms(record.create_time),
        "rk": record.recovery_key_id,
        # Pending only: the digests become one field each of the active hash.
        "rh": b"".join(record.recovery_hashes),
        "rck": record.sealed_recovery_codes.key_id,
        "rcb": record.sealed_recovery_codes.blob,
        "fp": record.request_fingerprint,
        "exp": _ms(record.expire_time),
    }


def _decode_factor(h: _Hash) -> _Factor:
    return _Factor(
        user_id=h[b"uid"].decode(),
        params=_decode_params(h[b"p"]),
        issuer=h[b"iss"].decode(),
        account_name=h[b"acc"].decode(),
        secret=SealedSecret(h[b"kid"].decode(), h[b"sec"]),
        create_time=_seconds(h[b"ct"]),
    )


def _split_digests(raw: bytes) -> tuple[bytes, ...]:
    return tuple(raw[i : i + 32] for i in range(0, len(raw), 32))


def _decode_pending(totp_id: str, h: _Hash) -> PendingRecord:
    factor = _decode_factor(h)
    return PendingRecord(
        totp_id=totp_id,
        user_id=factor.user_id,
        params=factor.params,
        issuer=factor.issuer,
        account_name=factor.account_name,
        secret=factor.secret,
        sealed_recovery_codes=SealedSecret(h[b"rck"].decode(), h[b"rcb"]),
        recovery_hashes=_split_digests(h[b"rh"]),
        recovery_key_id=h[b"rk"].decode(),
        request_fingerprint=h[b"fp"].decode(),
        create_time=factor.create_time,
        expire_time=_seconds(h[b"exp"]),
        failed_attempts=int(h.get(b"fails", 0)),
    )


# What get_active reads of an active hash: all but its recovery code fields.
_ACTIVE_FIELDS = ("id", "uid", "p", "iss", "acc", "kid", "sec", "ct", "at", "step", "used")


def _decode_active(h: _Hash) -> ActiveRecord:
    factor = _decode_factor(h)
    return ActiveRecord(
        totp_id=h[b"id"].decode(),
        user_id=factor.user_id,
        params=factor.params,
        issuer=factor.issuer,
        account_name=factor.account_name,
        secret=factor.secret,
        create_time=factor.create_time,
        activate_time=_seconds(h[b"at"]),
        last_step=int(h[b"step"]),
        last_used_time=_seconds(h[b"used"]) if b"used" in h else None,
    )


# Reply words to outcomes: a dict lookup rather than decoding and calling the Enum (which
# costs a microsecond or so on every code check).
_CHECK_OUTCOMES = {outcome.value.encode(): outcome for outcome in CheckOutcome}


def _check_result(reply: Sequence[Any]) -> CheckResult:
    """Decode the ``{outcome, totp_id, n}`` reply of the code-check scripts."""
    outcome, totp_id, n = _CHECK_OUTCOMES[reply[0]], reply[1].decode(), int(reply[2])
    seconds = None if n < 0 else n / 1000
    if outcome is CheckOutcome.LOCKED:
        return CheckResult(outcome, totp_id, retry_after=seconds)
    if outcome is CheckOutcome.REJECTED and n != 0:
        return CheckResult(outcome, totp_id, retry_after=seconds, lock_engaged=True)
    if outcome is CheckOutcome.ACCEPTED:
        return CheckResult(outcome, totp_id, remaining=n)
    return CheckResult(outcome, totp_id)


def _cluster_state(info: Any) -> str:
    """``cluster_state`` from a CLUSTER INFO reply, parsed (a dict) or not (text)."""
    if not isinstance(info, dict):
        text = info.decode() if isinstance(info, bytes) else str(info)
        info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return str(info.get("cluster_state", "")).strip()


def _activated(reply: Sequence[Any]) -> bool:
    return bool(reply[0] == ActivationOutcome.ACTIVATED.value.encode())


def _accepted(reply: Sequence[Any]) -> bool:
    return _CHECK_OUTCOMES.get(reply[0]) is CheckOutcome.ACCEPTED


class RedisStore:
    observe_call: StoreObserver | None = None  # set by the composition root (metrics)

    def __init__(
        self,
        client: Client,
        prefix: str = "totpd",
        events_maxlen: int = 100_000,
        *,
        min_replicas_ack: int = 0,
        replica_ack_timeout: float = 0.5,
        events_in_scripts: bool | None = None,
    ):
        """With ``min_replicas_ack`` > 0, a decisive write (activation, an accepted code,
        a used recovery code) is followed on the same connection by ``WAIT
        min_replicas_ack <replica_ack_timeout>``; if fewer replicas acknowledge in time
        the call raises StoreUnavailable although the primary applied the write
        (docs/reliability.md).

        ``events_in_scripts``: whether the deciding scripts append their audit events
        themselves (see the module docstring). None (the default) means yes unless
        ``client`` is a cluster client, which cannot; tests set False to compare the two
        ways on one server."""
        in_cluster = isinstance(client, RedisCluster)
        if events_in_scripts and in_cluster:
            raise ValueError("on Redis Cluster the events stream is in another slot")
        self._redis = client
        self._prefix = prefix
        self._events_maxlen = events_maxlen
        self._events_in_scripts = not in_cluster if events_in_scripts is None else events_in_scripts
        self._min_replicas_ack = min_replicas_ack
        self._wait_ms = max(1, _ms(replica_ack_timeout))
        lockout, recovery, audit = (_load_script(n) for n in ("lockout", "recovery", "audit"))
        self._create = self._script("create", prelude=audit)
        self._activate = self._script("activate", prelude=recovery + audit)
        self._check_code = self._script("check_code", prelude=lockout + audit)
        self._use_recovery = self._script("use_recovery_code", prelude=lockout + recovery + audit)
        self._replace_recovery = self._script("replace_recovery_codes", prelude=recovery)
        self._delete = self._script("delete")

    def _script(self, name: str, prelude: str = "") -> AsyncScript:
        return self._redis.register_script(prelude + _load_script(name))

    async def _run(self, script: AsyncScript, keys: list[str], args: list[_Arg]) -> Any:
        """``script(keys=keys, args=args)`` without the layers of redis-py's ``Script`` on
        every call: EVALSHA goes straight to the client. Only a NOSCRIPT (a restarted or
        flushed Redis) takes the ``Script``'s own way, which loads the script and runs it."""
        try:
            return await self._redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await script(keys=keys, args=args)

    def _keys(self, user_id: str) -> UserKeys:
        return UserKeys(self._prefix, user_id)

    def _audit(self, user_id: str, caller: str) -> tuple[list[str], list[_Arg]]:
        """What a deciding script takes for its audit events (audit.lua): the stream to
        append to as its last key (none where the store appends them itself), and the
        event fields that its decision does not decide, as ARGV."""
        stream = [events(self._prefix)] if self._events_in_scripts else []
        return stream, [user_id, caller, self._events_maxlen]

    async def _append_after(self, decided: Sequence[Event]) -> None:
        """Append the audit events of a decision whose script did not (Redis Cluster). The
        decision stands whatever happens here, so a lost event is logged, not raised."""
        for event in decided:
            try:
                await self.append_event(event)
            except StoreUnavailable:
                log.warning(
                    "audit event %s for %s was not recorded",
                    event.type.value,
                    event.totp_id,
                    exc_info=True,
                )

    async def _decide(
        self,
        script: AsyncScript,
        keys: list[str],
        args: list[_Arg],
        durable: Callable[[Any], bool],
    ) -> Any:
        """Run a deciding script; if its reply passes ``durable`` and replicas must
        acknowledge, make sure ``min_replicas_ack`` of them did."""
        if not self._min_replicas_ack:
            return await self._run(script, keys, args)
        reply, acked = await self._script_then_wait(script, keys, args)
        if durable(reply) and acked < self._min_replicas_ack:
            # Applied on the primary, not known to be on enough replicas: the caller gets
            # UNAVAILABLE and may retry (docs/reliability.md says what a retry sees).
            raise StoreUnavailable(
                f"redis: {acked} of {self._min_replicas_ack} replicas acknowledged "
                f"within {self._wait_ms} ms"
            )
        return reply

    async def _script_then_wait(
        self, script: AsyncScript, keys: list[str], args: list[_Arg]
    ) -> tuple[Any, int]:
        """The script and WAIT pipelined on one connection: WAIT counts the replicas that
        have the writes made on its own connection, so it must follow the script there."""
        wait = ("WAIT", self._min_replicas_ack, self._wait_ms)
        for command, body in (("EVALSHA", script.sha), ("EVAL", script.script)):
            try:
                if isinstance(self._redis, RedisCluster):
                    # The primary of the user's slot (all their keys share one hash tag).
                    node = self._redis.get_node_from_key(keys[0])
                    if node is None:
                        raise StoreUnavailable("redis: no node serves the user's slot")
                    async with self._redis.pipeline(transaction=False) as cpipe:
                        cpipe.execute_command(command, body, len(keys), *keys, *args)
                        cpipe.execute_command(*wait, target_nodes=node)
                        reply, acked = await cpipe.execute()
                    owner = self._redis.get_node_from_key(keys[0])
                    if owner is None or owner.name != node.name:
                        # MOVED: the script ran on another node, WAIT measured nothing.
                        raise StoreUnavailable("redis: slot moved during a replicated write")
                else:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        pipe.execute_command(command, body, len(keys), *keys, *args)
                        pipe.execute_command(*wait)
                        reply, acked = await pipe.execute()
            except NoScriptError:
                continue  # not run: this server has not cached the script; send it whole
            return reply, int(acked)
        raise StoreUnavailable("redis: EVAL answered NOSCRIPT")  # EVAL never does

    async def close(self) -> None:
        await self._redis.aclose()

    def expiry_listener(self, on_expired: Callable[[], None]) -> ExpiryListener:
        """A listener that calls ``on_expired()`` for each of this prefix's pending
        enrollments that Redis expires (store/expiry.py); close it before the store."""
        return ExpiryListener(self._redis, self._prefix, on_expired)

    @_unavailable_on_redis_errors
    async def ping(self) -> bool:
        """Whether the store can serve: the health probe (docs/reliability.md). One server
        or Sentinel's primary: it answers PING. A cluster: ``_cluster_serving``."""
        if isinstance(self._redis, RedisCluster):
            return await self._cluster_serving(self._redis)
        return bool(await self._redis.ping())

    @staticmethod
    async def _cluster_serving(cluster: RedisCluster) -> bool:
        """True iff every primary that owns slots in the client's slot map answers CLUSTER
        INFO within the timeout and says ``cluster_state:ok`` (every slot served, as that
        node sees it). A primary that does not answer raises (StoreUnavailable), which
        also makes the client re-read the slot map: after a failover the next probe asks
        the promoted replica."""
        await cluster.initialize()  # learn the slot map (a no-op once done)
        primaries = cluster.get_primaries()
        if not primaries:
            return False
        infos = await asyncio.gather(
            *(cluster.execute_command("CLUSTER INFO", target_nodes=node) for node in primaries),
            return_exceptions=True,  # every probe done (none left running) before we answer
        )
        for info in infos:
            if isinstance(info, BaseException):
                raise info
        return all(_cluster_state(info) == "ok" for info in infos)

    @_unavailable_on_redis_errors
    async def eviction_policy(self) -> str:
        """Redis's maxmemory-policy (from INFO, which ACL users can usually read even
        when CONFIG is denied to them). On a cluster: every node's, replicas too (one is
        promoted on failover); the first that is not noeviction, named with its node."""
        if isinstance(self._redis, RedisCluster):
            await self._redis.initialize()  # learn the nodes (a no-op once done)
            nodes = self._redis.get_nodes()
            if not nodes:
                raise StoreUnavailable("redis: the cluster named no nodes")
            for node in sorted(nodes, key=lambda n: n.name):
                info = await self._redis.info("memory", target_nodes=node)
                policy = str(info.get("maxmemory_policy", "unknown"))
                if policy != "noeviction":
                    return f"{policy} (on {node.name})"
            return "noeviction"
        info = await self._redis.info("memory")
        return str(info.get("maxmemory_policy", "unknown"))

    @_unavailable_on_redis_errors
    async def create_pending(
        self, record: PendingRecord, request_id: str, caller: str = ""
    ) -> str | None:
        k = self._keys(record.user_id)
        stream, audit = self._audit(record.user_id, caller)
        keys = [k.pending(record.totp_id), k.pending_index]
        if request_id:
            keys.append(k.idempotency(request_id))
        keys += stream
        args: list[_Arg] = [record.totp_id, _ms(record.create_time), _ms(record.expire_time)]
        args += ["1" if request_id else "0", *audit]
        args += [item for pair in _encode_pending(record).items() for item in pair]
        existing = await self._run(self._create, keys, args)
        if existing:
            return cast(bytes, existing).decode()
        if not self._events_in_scripts:
            created = creation_events(record.user_id, record.totp_id, record.create_time, caller)
            await self._append_after(created)
        return None

    @_unavailable_on_redis_errors
    async def get_pending(self, user_id: str, totp_id: str) -> PendingRecord | None:
        h = cast(_Hash, await self._redis.hgetall(self._keys(user_id).pending(totp_id)))
        return _decode_pending(totp_id, h) if h else None

    @_unavailable_on_redis_errors
    async def activate(
        self,
        user_id: str,
        totp_id: str,
        matched_step: int | None,
        max_attempts: int,
        now: float,
        caller: str = "",
    ) -> ActivationResult:
        k = self._keys(user_id)
        stream, audit = self._audit(user_id, caller)
        keys = [k.pending(totp_id), k.pending_index, k.active, k.lockout, *stream]
        matched = "0" if matched_step is None else "1"
        args: list[_Arg] = [totp_id, matched, matched_step or 0, max_attempts, _ms(now), *audit]
        reply = await self._decide(self._activate, keys, args, _activated)
        outcome = ActivationOutcome(reply[0].decode())
        replaced = reply[1].decode() if outcome is ActivationOutcome.ACTIVATED else ""
        result = ActivationResult(outcome, replaced or None)
        if not self._events_in_scripts:
            await self._append_after(activation_events(user_id, totp_id, result, now, caller))
        return result

    @_unavailable_on_redis_errors
    async def get_active(self, user_id: str) -> ActiveRecord | None:
        # HMGET, not HGETALL: the ten recovery code digests would double the reply.
        values = await self._redis.hmget(self._keys(user_id).active, _ACTIVE_FIELDS)
        pairs = zip(_ACTIVE_FIELDS, cast(list[bytes | None], values), strict=True)
        h = {name.encode(): value for name, value in pairs if value is not None}
        return _decode_active(h) if h else None

    @staticmethod
    def _policy_args(policy: LockoutPolicy) -> list[int]:
        return [
            policy.threshold,
            _ms(policy.base_seconds),
            _ms(policy.max_seconds),
            policy.permanent_after,
        ]

    @_unavailable_on_redis_errors
    async def check_code(
        self,
        user_id: str,
        totp_id: str,
        matched_step: int | None,
        now: float,
        policy: LockoutPolicy,
        caller: str = "",
    ) -> CheckResult:
        k = self._keys(user_id)
        stream, audit = self._audit(user_id, caller)
        matched = "0" if matched_step is None else "1"
        args: list[_Arg] = [totp_id, matched, matched_step or 0, _ms(now)]
        args += [*self._policy_args(policy), *audit]
        keys = [k.active, k.lockout, *stream]
        result = _check_result(await self._decide(self._check_code, keys, args, _accepted))
        if not self._events_in_scripts:
            await self._append_after(check_events(EventType.VERIFY, user_id, result, now, caller))
        return result

    @_unavailable_on_redis_errors
    async def use_recovery_code(
        self,
        user_id: str,
        digests: list[bytes],
        now: float,
        policy: LockoutPolicy,
        caller: str = "",
    ) -> CheckResult:
        k = self._keys(user_id)
        stream, audit = self._audit(user_id, caller)
        args: list[_Arg] = [_ms(now), *self._policy_args(policy), *audit, *digests]
        keys = [k.active, k.lockout, *stream]
        result = _check_result(await self._decide(self._use_recovery, keys, args, _accepted))
        if not self._events_in_scripts:
            used = check_events(EventType.USE_RECOVERY_CODE, user_id, result, now, caller)
            await self._append_after(used)
        return result

    @_unavailable_on_redis_errors
    async def replace_recovery_codes(
        self, user_id: str, key_id: str, digests: list[bytes]
    ) -> str | None:
        k = self._keys(user_id)
        totp_id = await self._run(self._replace_recovery, [k.active], [key_id, *digests])
        return totp_id.decode() if totp_id else None

    @_unavailable_on_redis_errors
    async def list_pending(self, user_id: str, now: float) -> list[PendingRecord]:
        k = self._keys(user_id)
        members = await self._redis.zrangebyscore(k.pending_index, _ms(now), "+inf")
        ids = [cast(bytes, member).decode() for member in members]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for totp_id in ids:
                pipe.hgetall(k.pending(totp_id))
            hashes = await pipe.execute()
        # An entry can outlive its enrollment briefly (TTL fired, or activated): skip it.
        return [_decode_pending(i, cast(_Hash, h)) for i, h in zip(ids, hashes, strict=True) if h]

    @_unavailable_on_redis_errors
    async def recovery_codes_remaining(self, user_id: str) -> int:
        # The active hash counts its unused codes ('rn'): one field, however many codes.
        return int(await self._redis.hget(self._keys(user_id).active, "rn") or 0)

    @_unavailable_on_redis_errors
    async def lockout(self, user_id: str) -> Lockout:
        h = cast(_Hash, await self._redis.hgetall(self._keys(user_id).lockout))
        return Lockout(
            consecutive_failures=int(h.get(b"fails", 0)),
            locked_until=_seconds(h[b"until"]) if b"until" in h else None,
            permanent=b"hard" in h,
        )

    @_unavailable_on_redis_errors
    async def delete(self, user_id: str, totp_id: str | None) -> str | None:
        k = self._keys(user_id)
        keys = [k.active, k.lockout, k.pending_index]
        if totp_id:
            keys.append(k.pending(totp_id))
        deleted = await self._run(self._delete, keys, [totp_id or ""])
        return deleted.decode() if deleted else None

    @_unavailable_on_redis_errors
    async def append_event(self, event: Event) -> None:
        # audit.lua writes the same fields in the same order: keep the two in step.
        await self._redis.xadd(
            events(self._prefix),
            {
                "type": event.type.value,
                "user_id": event.user_id,
                "totp_id": event.totp_id,
                "outcome": event.outcome,
                "time": str(_ms(event.time)),
                "caller": event.caller,
            },
            maxlen=self._events_maxlen,
            approximate=True,
        )
