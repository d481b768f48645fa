"""Test doubles for the unit tests: an in-memory Store and a QR renderer that draws nothing.

``FakeStore`` implements the ``totpd.store.Store`` Protocol in plain Python with the
semantics of the Redis store's Lua scripts (``server/totpd/store/lua/*.lua``), so the use
cases of ``TotpService`` can be tested without Redis. It is a test double, not a second
store to ship, and it stays as close to the scripts as it can:

* Each method runs to completion without awaiting anything, so under asyncio it is as
  atomic as a Lua script is in Redis.
* Redis expires pending enrollments and idempotency keys on its own clock (``PX``); the
  fake asks the clock it is given, so tests move time instead of sleeping.
* The lockout is kept in whole milliseconds, as ``lockout.lua`` keeps it, so retry delays
  match the Redis store's to the millisecond.
* What Redis keeps per user is mirrored one-to-one in ``_User`` (the comments name the key
  of ``totpd.store.keys`` each field stands for).
* The deciding methods record their audit events in ``events`` in the same step as the
  decision, as the Redis store's scripts do (``store/lua/audit.lua``); ``append_event``
  adds the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from totpd.model import (
    ActivationOutcome,
    ActivationResult,
    ActiveRecord,
    CheckOutcome,
    CheckResult,
    Event,
    EventType,
    Lockout,
    LockoutPolicy,
    PendingRecord,
    QrCode,
    QrFormat,
    activation_events,
    check_events,
    creation_events,
)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)  # as RedisStore converts times for its scripts


@dataclass
class _LockState:
    """The ``lockout`` hash: 'fails', 'until' (ms) and 'hard'."""

    fails: int = 0
    until_ms: int | None = None
    hard: bool = False


@dataclass
class _User:
    pending: dict[str, PendingRecord] = field(default_factory=dict)  # pending:<totp_id>
    idempotency: dict[str, tuple[str, float]] = field(default_factory=dict)  # idem:<req>
    active: ActiveRecord | None = None  # active
    recovery_key_id: str | None = None  # the 'rk' field of active
    recovery: set[bytes] = field(default_factory=set)  # the '#' fields of active
    lock: _LockState | None = None  # lockout


class FakeStore:
    """An in-memory ``Store``; see the module docstring for how faithful it is."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._users: dict[str, _User] = {}
        #: Audit events in the order they were appended (the ``events`` stream).
        self.events: list[Event] = []

    def _user(self, user_id: str) -> _User:
        return self._users.setdefault(user_id, _User())

    def _alive(self, expire_time: float) -> bool:
        """Whether a key written with ``PX`` to expire at ``expire_time`` still exists."""
        return _ms(self._clock()) < _ms(expire_time)

    def _live_pending(self, user: _User, totp_id: str) -> PendingRecord | None:
        record = user.pending.get(totp_id)
        if record is not None and not self._alive(record.expire_time):
            del user.pending[totp_id]  # what Redis's TTL would have done
            return None
        return record

    # -- lockout.lua -------------------------------------------------------------------

    @staticmethod
    def _lock_remaining(user: _User, now_ms: int) -> int | None:
        """Milliseconds until the lock lifts, -1 if never by itself, None if not locked."""
        lock = user.lock
        if lock is None:
            return None
        if lock.hard:
            return -1
        if lock.until_ms is not None and lock.until_ms > now_ms:
            return lock.until_ms - now_ms
        return None

    @staticmethod
    def _record_failure(user: _User, now_ms: int, policy: LockoutPolicy) -> CheckResult:
        """Count one failure; the REJECTED result says whether it engaged a lock (for how
        many seconds, or None for good)."""
        lock = user.lock = user.lock or _LockState()
        lock.fails += 1
        totp_id = user.active.totp_id if user.active else ""
        if lock.fails >= policy.permanent_after:
            lock.hard = True
            return CheckResult(CheckOutcome.REJECTED, totp_id, None, lock_engaged=True)
        if lock.fails >= policy.threshold:
            base, ceiling = _ms(policy.base_seconds), _ms(policy.max_seconds)
            duration = min(base * 2 ** (lock.fails - policy.threshold), ceiling)
            lock.until_ms = now_ms + duration
            return CheckResult(CheckOutcome.REJECTED, totp_id, duration / 1000, lock_engaged=True)
        return CheckResult(CheckOutcome.REJECTED, totp_id)

    @classmethod
    def _locked(cls, user: _User, now_ms: int) -> CheckResult | None:
        remaining = cls._lock_remaining(user, now_ms)
        if remaining is None:
            return None
        retry_after = None if remaining < 0 else remaining / 1000
        totp_id = user.active.totp_id if user.active else ""
        return CheckResult(CheckOutcome.LOCKED, totp_id, retry_after)

    # -- the Store Protocol ------------------------------------------------------------

    async def create_pending(
        self, record: PendingRecord, request_id: str, caller: str = ""
    ) -> str | None:
        """create.lua, and its audit event: the idempotency key, when given, lives as long
        as the record."""
        user = self._user(record.user_id)
        if request_id:
            existing = user.idempotency.get(request_id)
            if existing is not None and self._alive(existing[1]):
                return existing[0]
            user.idempotency[request_id] = (record.totp_id, record.expire_time)
        user.pending[record.totp_id] = record
        self.events.extend(
            creation_events(record.user_id, record.totp_id, record.create_time, caller)
        )
        return None

    async def get_pending(self, user_id: str, totp_id: str) -> PendingRecord | None:
        return self._live_pending(self._user(user_id), totp_id)

    async def activate(
        self,
        user_id: str,
        totp_id: str,
        matched_step: int | None,
        max_attempts: int,
        now: float,
        caller: str = "",
    ) -> ActivationResult:
        """activate.lua, and its audit event. Neither outcome removes the idempotency key
        (it just expires)."""
        result = self._activate(user_id, totp_id, matched_step, max_attempts, now)
        self.events.extend(activation_events(user_id, totp_id, result, now, caller))
        return result

    def _activate(
        self,
        user_id: str,
        totp_id: str,
        matched_step: int | None,
        max_attempts: int,
        now: float,
    ) -> ActivationResult:
        user = self._user(user_id)
        record = self._live_pending(user, totp_id)
        if record is None:
            return ActivationResult(ActivationOutcome.NOT_FOUND)
        if matched_step is not None:
            replaced = user.active.totp_id if user.active else None
            # The old factor, its codes and its lockout go in the same step.
            user.active = ActiveRecord(
                totp_id=totp_id,
                user_id=record.user_id,
                params=record.params,
                issuer=record.issuer,
                account_name=record.account_name,
                secret=record.secret,
                create_time=record.create_time,
                activate_time=_ms(now) / 1000,
                last_step=matched_step,
            )
            user.recovery = set(record.recovery_hashes)
            user.recovery_key_id = record.recovery_key_id
            user.lock = None
            del user.pending[totp_id]
            return ActivationResult(ActivationOutcome.ACTIVATED, replaced)
        fails = record.failed_attempts + 1
        if fails >= max_attempts:
            del user.pending[totp_id]
            return ActivationResult(ActivationOutcome.DISCARDED)
        user.pending[totp_id] = dataclasses.replace(record, failed_attempts=fails)
        return ActivationResult(ActivationOutcome.REJECTED)

    async def get_active(self, user_id: str) -> ActiveRecord | None:
        return self._user(user_id).active

    async def check_code(
        self,
        user_id: str,
        totp_id: str,
        matched_step: int | None,
        now: float,
        policy: LockoutPolicy,
        caller: str = "",
    ) -> CheckResult:
        """check_code.lua: not found, stale, locked, replay, accept or count a failure,
        and the audit events of that.

        Every result but NOT_FOUND names the active factor's id (for STALE, the new one)."""
        result = self._check_code(user_id, totp_id, matched_step, now, policy)
        self._record_check(EventType.VERIFY, user_id, result, now, caller)
        return result

    def _check_code(
        self,
        user_id: str,
        totp_id: str,
        matched_step: int | None,
        now: float,
        policy: LockoutPolicy,
    ) -> CheckResult:
        user = self._user(user_id)
        now_ms = _ms(now)
        active = user.active
        if active is None:
            return CheckResult(CheckOutcome.NOT_FOUND)
        if active.totp_id != totp_id:
            return CheckResult(CheckOutcome.STALE, active.totp_id)
        locked = self._locked(user, now_ms)
        if locked is not None:
            return locked
        # A step at or before the last accepted one is a replay, even of a code never seen.
        if matched_step is not None and matched_step > active.last_step:
            user.active = dataclasses.replace(
                active, last_step=matched_step, last_used_time=now_ms / 1000
            )
            user.lock = None
            return CheckResult(CheckOutcome.ACCEPTED, active.totp_id)
        return self._record_failure(user, now_ms, policy)

    async def use_recovery_code(
        self,
        user_id: str,
        digests: list[bytes],
        now: float,
        policy: LockoutPolicy,
        caller: str = "",
    ) -> CheckResult:
        """use_recovery_code.lua: like check_code, and ACCEPTED says how many are left."""
        result = self._use_recovery_code(user_id, digests, now, policy)
        self._record_check(EventType.USE_RECOVERY_CODE, user_id, result, now, caller)
        return result

    def _use_recovery_code(
        self, user_id: str, digests: list[bytes], now: float, policy: LockoutPolicy
    ) -> CheckResult:
        user = self._user(user_id)
        now_ms = _ms(now)
        if user.active is None:
            return CheckResult(CheckOutcome.NOT_FOUND)
        locked = self._locked(user, now_ms)
        if locked is not None:
            return locked
        for digest in digests:
            if digest in user.recovery:
                user.recovery.remove(digest)
                user.lock = None
                return CheckResult(
                    CheckOutcome.ACCEPTED, user.active.totp_id, remaining=len(user.recovery)
                )
        return self._record_failure(user, now_ms, policy)

    async def replace_recovery_codes(
        self, user_id: str, key_id: str, digests: list[bytes]
    ) -> str | None:
        user = self._user(user_id)
        if user.active is None:
            return None
        user.recovery = set(digests)
        user.recovery_key_id = key_id
        return user.active.totp_id

    async def list_pending(self, user_id: str, now: float) -> list[PendingRecord]:
        """Unexpired enrollments in order of expiry, as the index (a zset) lists them."""
        user = self._user(user_id)
        listed = [
            record
            for totp_id, record in list(user.pending.items())
            if _ms(record.expire_time) >= _ms(now) and self._live_pending(user, totp_id)
        ]
        return sorted(listed, key=lambda r: r.expire_time)

    async def recovery_codes_remaining(self, user_id: str) -> int:
        return len(self._user(user_id).recovery)

    async def lockout(self, user_id: str) -> Lockout:
        lock = self._user(user_id).lock or _LockState()
        return Lockout(
            consecutive_failures=lock.fails,
            locked_until=None if lock.until_ms is None else lock.until_ms / 1000,
            permanent=lock.hard,
        )

    async def delete(self, user_id: str, totp_id: str | None) -> str | None:
        """delete.lua: the active factor (None or its id) or else one pending enrollment;
        the id of what was deleted, or None."""
        user = self._user(user_id)
        active = user.active
        if active is not None and totp_id in (None, "", active.totp_id):
            user.active, user.recovery_key_id = None, None
            user.recovery = set()
            user.lock = None
            return active.totp_id
        if totp_id and self._live_pending(user, totp_id) is not None:
            del user.pending[totp_id]
            return totp_id
        return None

    def _record_check(
        self, type_: EventType, user_id: str, result: CheckResult, now: float, caller: str
    ) -> None:
        """audit.lua: the events of a check, at the decision's time."""
        self.events.extend(check_events(type_, user_id, result, now, caller))

    async def append_event(self, event: Event) -> None:
        self.events.append(event)

    async def ping(self) -> bool:
        return True


class FakeQrRenderer:
    """Stands in for ``qr.render``: the "image" is the data itself, and calls are kept."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, QrFormat, int]] = []

    def __call__(self, data: str, fmt: QrFormat, size: int) -> QrCode:
        self.calls.append((data, fmt, size))
        return QrCode(data.encode(), fmt)
