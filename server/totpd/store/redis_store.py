"""The Redis implementation of the store. It owns every key name and Lua script.

Each decision (activate, check a code, consume a recovery code) is one Lua script that
reads, decides and writes atomically, with every key in KEYS and the server's clock in
ARGV, so the outcome is the same through any number of totpd processes.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from importlib import resources
from typing import Any, ParamSpec, TypeVar, cast

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript

from ..errors import StoreUnavailable
from ..model import (
    ActivationOutcome,
    ActivationResult,
    ActiveRecord,
    Algorithm,
    CheckOutcome,
    CheckResult,
    Event,
    Lockout,
    LockoutPolicy,
    PendingRecord,
    SealedSecret,
    TotpParams,
)
from .keys import UserKeys, events

log = logging.getLogger(__name__)

P = ParamSpec("P")
_Hash = dict[bytes, bytes]  # a hash as read with decode_responses off
_Arg = bytes | str | int
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


def _unavailable_on_redis_errors(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
        except redis.ResponseError as exc:
            if str(exc).startswith(_TRANSIENT_REPLIES):
                raise StoreUnavailable(f"redis: {str(exc).split(' ', 1)[0]}") from exc
            raise

    return wrapper


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _seconds(ms: bytes | str | int) -> float:
    return int(ms) / 1000


def _load_script(name: str) -> str:
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text()


def connect(url: str, timeout: float = 1.0, max_connections: int = 64) -> redis.Redis:
    """One client for the process: a bounded pool, timeouts, and a single quick retry on a
    dropped connection (not on timeouts: a timed-out script may have run already)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1, (redis.ConnectionError,)),
        max_connections=max_connections,
        health_check_interval=30,
    )


# -- record encoding ------------------------------------------------------------------
# What pending and active records share travels as one opaque JSON field, 'core', so the
# activation script can move it over without knowing what is inside.


def _encode_core(
    user_id: str,
    params: TotpParams,
    issuer: str,
    account_name: str,
    secret: SealedSecret,
    create_time: float,
) -> bytes:
    return json.dumps(
        {
            "uid": user_id,
            "alg": params.algorithm.value,
            "dig": params.digits,
            "per": params.period,
            "iss": issuer,
            "acc": account_name,
            "kid": secret.key_id,
            "sec": base64.b64encode(secret.blob).decode(),
            "ct": _ms(create_time),
        },
        separators=(",", ":"),
    ).encode()


def _decode_core(raw: bytes) -> dict[str, Any]:
    core: dict[str, Any] = json.loads(raw)
    core["params"] = TotpParams(Algorithm(core["alg"]), core["dig"], core["per"])
    core["secret"] = SealedSecret(core["kid"], base64.b64decode(core["sec"]))
    return core


def _split_digests(raw: bytes) -> tuple[bytes, ...]:
    return tuple(raw[i : i + 32] for i in range(0, len(raw), 32))


def _decode_pending(totp_id: str, h: dict[bytes, bytes]) -> PendingRecord:
    core = _decode_core(h[b"core"])
    return PendingRecord(
        totp_id=totp_id,
        user_id=core["uid"],
        params=core["params"],
        issuer=core["iss"],
        account_name=core["acc"],
        secret=core["secret"],
        sealed_recovery_codes=SealedSecret(h[b"rck"].decode(), h[b"rcb"]),
        recovery_hashes=_split_digests(h[b"rh"]),
        recovery_key_id=h[b"rk"].decode(),
        request_fingerprint=h[b"fp"].decode(),
        create_time=_seconds(core["ct"]),
        expire_time=_seconds(h[b"exp"]),
        failed_attempts=int(h.get(b"fails", 0)),
    )


def _decode_active(h: dict[bytes, bytes]) -> ActiveRecord:
    core = _decode_core(h[b"core"])
    return ActiveRecord(
        totp_id=h[b"id"].decode(),
        user_id=core["uid"],
        params=core["params"],
        issuer=core["iss"],
        account_name=core["acc"],
        secret=core["secret"],
        create_time=_seconds(core["ct"]),
        activate_time=_seconds(h[b"at"]),
        last_step=int(h[b"step"]),
        last_used_time=_seconds(h[b"used"]) if b"used" in h else None,
    )


def _check_result(reply: Sequence[Any]) -> CheckResult:
    """Decode the ``{outcome, totp_id, n}`` reply of the code-check scripts."""
    outcome, totp_id, n = CheckOutcome(reply[0].decode()), reply[1].decode(), int(reply[2])
    seconds = None if n < 0 else n / 1000
    if outcome is CheckOutcome.LOCKED:
        return CheckResult(outcome, totp_id, retry_after=seconds)
    if outcome is CheckOutcome.REJECTED and n != 0:
        return CheckResult(outcome, totp_id, retry_after=seconds, lock_engaged=True)
    if outcome is CheckOutcome.ACCEPTED:
        return CheckResult(outcome, totp_id, remaining=n)
    return CheckResult(outcome, totp_id)


class RedisStore:
    def __init__(self, client: redis.Redis, prefix: str = "totpd", events_maxlen: int = 100_000):
        self._redis = client
        self._prefix = prefix
        self._events_maxlen = events_maxlen
        lockout = _load_script("lockout")
        self._create = self._script("create")
        self._activate = self._script("activate")
        self._check_code = self._script("check_code", prelude=lockout)
        self._use_recovery = self._script("use_recovery_code", prelude=lockout)
        self._replace_recovery = self._script("replace_recovery_codes")
        self._delete = self._script("delete")

    def _script(self, name: str, prelude: str = "") -> AsyncScript:
        return self._redis.register_script(prelude + _load_script(name))

    def _keys(self, user_id: str) -> UserKeys:
        return UserKeys(self._prefix, user_id)

    async def close(self) -> None:
        await self._redis.aclose()

    @_unavailable_on_redis_errors
    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    @_unavailable_on_redis_errors
    async def eviction_policy(self) -> str:
        """Redis's maxmemory-policy (from INFO, which ACL users can usually read even
        when CONFIG is denied to them)."""
        info = await self._redis.info("memory")
        return str(info.get("maxmemory_policy", "unknown"))

    @_unavailable_on_redis_errors
    async def create_pending(self, record: PendingRecord, request_id: str) -> str | None:
        k = self._keys(record.user_id)
        keys = [k.pending(record.totp_id), k.pending_index]
        if request_id:
            keys.append(k.idempotency(request_id))
        fields: dict[str, bytes | str | int] = {
            "core": _encode_core(
                record.user_id,
                record.params,
                record.issuer,
                record.account_name,
                record.secret,
                record.create_time,
            ),
            "rk": record.recovery_key_id,
            "rh": b"".join(record.recovery_hashes),
            "rck": record.sealed_recovery_codes.key_id,
            "rcb": record.sealed_recovery_codes.blob,
            "fp": record.request_fingerprint,
            "exp": _ms(record.expire_time),
        }
        flat = [item for pair in fields.items() for item in pair]
        args: list[_Arg] = [record.totp_id, _ms(record.create_time), _ms(record.expire_time)]
        args += flat
        existing = await self._create(keys=keys, args=args)
        return existing.decode() if existing else None

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
    ) -> ActivationResult:
        k = self._keys(user_id)
        keys = [k.pending(totp_id), k.pending_index, k.active, k.recovery, k.lockout]
        matched = "0" if matched_step is None else "1"
        args: list[_Arg] = [totp_id, matched, matched_step or 0, max_attempts, _ms(now)]
        reply = await self._activate(keys=keys, args=args)
        outcome = ActivationOutcome(reply[0].decode())
        replaced = reply[1].decode() if outcome is ActivationOutcome.ACTIVATED else ""
        return ActivationResult(outcome, replaced or None)

    @_unavailable_on_redis_errors
    async def get_active(self, user_id: str) -> ActiveRecord | None:
        h = cast(_Hash, await self._redis.hgetall(self._keys(user_id).active))
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
    ) -> CheckResult:
        k = self._keys(user_id)
        matched = "0" if matched_step is None else "1"
        args: list[_Arg] = [totp_id, matched, matched_step or 0, _ms(now)]
        args += self._policy_args(policy)
        return _check_result(await self._check_code(keys=[k.active, k.lockout], args=args))

    @_unavailable_on_redis_errors
    async def use_recovery_code(
        self, user_id: str, digests: list[bytes], now: float, policy: LockoutPolicy
    ) -> CheckResult:
        k = self._keys(user_id)
        args: list[_Arg] = [_ms(now), *self._policy_args(policy), *digests]
        reply = await self._use_recovery(keys=[k.active, k.recovery, k.lockout], args=args)
        return _check_result(reply)

    @_unavailable_on_redis_errors
    async def replace_recovery_codes(
        self, user_id: str, key_id: str, digests: list[bytes]
    ) -> str | None:
        k = self._keys(user_id)
        totp_id = await self._replace_recovery(keys=[k.active, k.recovery], args=[key_id, *digests])
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
        return int(await self._redis.scard(self._keys(user_id).recovery))

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
        keys = [k.active, k.recovery, k.lockout, k.pending_index]
        if totp_id:
            keys.append(k.pending(totp_id))
        deleted = await self._delete(keys=keys, args=[totp_id or ""])
        return deleted.decode() if deleted else None

    @_unavailable_on_redis_errors
    async def append_event(self, event: Event) -> None:
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
