"""The use cases of totpd: enroll, activate, verify, recover, inspect, delete.

This layer knows neither gRPC nor Redis: it takes validated commands, talks to a ``Store``
and raises the errors of ``totpd.errors``. Secrets are decrypted here only for as long as
a code check needs them, and never logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import otp, qr, recovery_codes
from .errors import (
    InvalidCode,
    RequestIdAlreadyUsed,
    StoreUnavailable,
    TooManyAttempts,
    TotpNotFound,
)
from .keyring import Keyring
from .model import (
    Activation,
    ActivationOutcome,
    CheckOutcome,
    CheckResult,
    CreateCommand,
    Enrollment,
    Event,
    EventType,
    LockoutPolicy,
    PendingRecord,
    QrCode,
    QrFormat,
    RecoveryCodeUse,
    Status,
    Totp,
    TotpState,
    Verification,
)
from .store import Store

log = logging.getLogger(__name__)

# Purposes that bind each sealed value to what it is (AES-GCM associated data).
_SECRET = "secret"
_RECOVERY_CODES = "recovery-codes"
# Public for totpd.rotate, which re-seals what this service sealed.
SECRET_PURPOSE, RECOVERY_CODES_PURPOSE = _SECRET, _RECOVERY_CODES
# How often a verification re-reads the factor when it was replaced mid-check.
_STALE_RETRIES = 3


@dataclass(frozen=True)
class Policy:
    """The service's tunables, with the defaults the issues and NIST ask for."""

    default_issuer: str = "totpd"
    activation_max_attempts: int = 5
    activation_window: int = 1
    verify_window: int = 1
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)


def _fingerprint(cmd: CreateCommand) -> str:
    """What makes two CreateTotp requests "the same" for idempotency (not the QR format)."""
    p = cmd.params
    parts = [
        cmd.issuer,
        cmd.account_name,
        p.algorithm.value,
        p.digits,
        p.period,
        cmd.expiration_seconds,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def new_totp_id() -> str:
    return f"totp-{secrets.token_hex(16)}"


#: The service's metrics port: called with each audit event's type and outcome (for a
#: code check that matched an already used step, "replayed" instead of "rejected"). The
#: composition root plugs in totpd.metrics; the service knows nothing of Prometheus.
EventCounter = Callable[[EventType, str], None]


def _count_nothing(type_: EventType, outcome: str) -> None:
    pass


class TotpService:
    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.time,
        render_qr: Callable[[str, QrFormat, int], QrCode] = qr.render,
        count_event: EventCounter = _count_nothing,
    ) -> None:
        self._count_event = count_event
        self._store = store
        self._keyring = keyring
        self._policy = policy or Policy()
        self._clock = clock
        self._render_qr = render_qr

    # -- enrollment ----------------------------------------------------------------------

    async def create(self, cmd: CreateCommand, caller: str = "") -> Enrollment:
        now = self._now()
        totp_id = new_totp_id()
        secret = otp.new_secret()
        codes = recovery_codes.new_codes()
        record = PendingRecord(
            totp_id=totp_id,
            user_id=cmd.user_id,
            params=cmd.params,
            issuer=cmd.issuer or self._policy.default_issuer,
            account_name=cmd.account_name,
            secret=self._keyring.seal(secret, _SECRET, cmd.user_id, totp_id),
            sealed_recovery_codes=self._keyring.seal(
                "\n".join(codes).encode(), _RECOVERY_CODES, cmd.user_id, totp_id
            ),
            recovery_hashes=tuple(self._recovery_digest(c, cmd.user_id) for c in codes),
            recovery_key_id=self._keyring.hashing_key_id,
            request_fingerprint=_fingerprint(cmd),
            create_time=now,
            expire_time=now + cmd.expiration_seconds,
        )
        existing_id = await self._store.create_pending(record, cmd.request_id, caller)
        if existing_id is not None:
            return await self._replay_create(cmd, existing_id)
        self._count_event(EventType.CREATE, "ok")  # the store recorded the event
        return await self._enrollment(record, secret, codes, cmd)

    async def _replay_create(self, cmd: CreateCommand, totp_id: str) -> Enrollment:
        """Answer a retried CreateTotp with the enrollment the first attempt made."""
        record = await self._store.get_pending(cmd.user_id, totp_id)
        if record is None or record.request_fingerprint != _fingerprint(cmd):
            raise RequestIdAlreadyUsed(
                "request_id names an enrollment that is no longer pending "
                "or was created with other parameters"
            )
        secret = self._keyring.open(record.secret, _SECRET, cmd.user_id, totp_id)
        sealed_codes = self._keyring.open(
            record.sealed_recovery_codes, _RECOVERY_CODES, cmd.user_id, totp_id
        )
        codes = tuple(sealed_codes.decode().split("\n"))
        return await self._enrollment(record, secret, codes, cmd)

    async def _enrollment(
        self, record: PendingRecord, secret: bytes, codes: tuple[str, ...], cmd: CreateCommand
    ) -> Enrollment:
        uri = otp.otpauth_uri(secret, record.params, record.issuer, record.account_name)
        # About 0.15 ms for a typical URI (qr.py, qr_matrix.py): inline, as a thread
        # hand-off would cost about as much as the rendering, and it would hold the GIL.
        qr_code = self._render_qr(uri, cmd.qr_format, cmd.qr_size)
        return Enrollment(
            totp=Totp.of_pending(record),
            secret=otp.encode_secret(secret),
            otpauth_uri=uri,
            qr_code=qr_code,
            recovery_codes=codes,
        )

    async def activate(self, user_id: str, totp_id: str, code: str, caller: str = "") -> Activation:
        record = await self._store.get_pending(user_id, totp_id)
        if record is None:
            await self._event(EventType.ACTIVATE, user_id, totp_id, "not_found", caller)
            raise TotpNotFound("no such pending enrollment for this user")
        now = self._now()
        secret = self._keyring.open(record.secret, _SECRET, user_id, totp_id)
        step = otp.match_step(secret, record.params, code, now, self._policy.activation_window)
        result = await self._store.activate(
            user_id, totp_id, step, self._policy.activation_max_attempts, now, caller
        )
        self._count_event(EventType.ACTIVATE, result.outcome.value)  # the store recorded it
        match result.outcome:
            case ActivationOutcome.ACTIVATED:
                totp = Totp(
                    totp_id=totp_id,
                    user_id=user_id,
                    state=TotpState.ACTIVE,
                    params=record.params,
                    issuer=record.issuer,
                    account_name=record.account_name,
                    create_time=record.create_time,
                    activate_time=now,
                )
                return Activation(totp, result.replaced_totp_id)
            case ActivationOutcome.REJECTED:
                raise InvalidCode("the code is not valid")
            case ActivationOutcome.DISCARDED:
                raise TooManyAttempts("too many failed attempts: the enrollment was discarded")
            case ActivationOutcome.NOT_FOUND:
                raise TotpNotFound("no such pending enrollment for this user")

    # -- checks --------------------------------------------------------------------------

    async def verify(self, user_id: str, code: str, caller: str = "") -> Verification:
        for _ in range(_STALE_RETRIES):
            active = await self._store.get_active(user_id)
            if active is None:
                await self._event(EventType.VERIFY, user_id, "", "not_found", caller)
                raise TotpNotFound("the user has no active TOTP")
            now = self._now()
            secret = self._keyring.open(active.secret, _SECRET, user_id, active.totp_id)
            step = otp.match_step(secret, active.params, code, now, self._policy.verify_window)
            result = await self._store.check_code(
                user_id, active.totp_id, step, now, self._policy.lockout, caller
            )
            if result.outcome is CheckOutcome.STALE:
                continue  # replaced between read and check: check against the new one
            self._count_check(EventType.VERIFY, result, matched=step is not None)
            self._raise_unless_accepted(result)
            assert step is not None
            return Verification(active.totp_id, step - otp.time_step(now, active.params.period))
        raise InvalidCode("the code is not valid")

    async def use_recovery_code(self, user_id: str, code: str, caller: str = "") -> RecoveryCodeUse:
        canonical = recovery_codes.normalize(code)
        # Garbage is still a check: it counts as a failure like any unknown code.
        digests = list(self._keyring.digests(canonical, user_id).values()) if canonical else []
        result = await self._store.use_recovery_code(
            user_id, digests, self._now(), self._policy.lockout, caller
        )
        self._count_check(EventType.USE_RECOVERY_CODE, result)
        self._raise_unless_accepted(result)
        return RecoveryCodeUse(result.totp_id, result.remaining)

    @staticmethod
    def _raise_unless_accepted(result: CheckResult) -> None:
        match result.outcome:
            case CheckOutcome.ACCEPTED:
                return
            case CheckOutcome.NOT_FOUND:
                raise TotpNotFound("the user has no active TOTP")
            case CheckOutcome.LOCKED:
                raise TooManyAttempts("too many failed attempts", result.retry_after)
            case _:
                raise InvalidCode("the code is not valid")

    # -- management ----------------------------------------------------------------------

    async def regenerate_recovery_codes(
        self, user_id: str, caller: str = ""
    ) -> tuple[str, tuple[str, ...]]:
        codes = recovery_codes.new_codes()
        digests = [self._recovery_digest(c, user_id) for c in codes]
        totp_id = await self._store.replace_recovery_codes(
            user_id, self._keyring.hashing_key_id, digests
        )
        if totp_id is None:
            raise TotpNotFound("the user has no active TOTP")
        await self._event(EventType.REGENERATE_RECOVERY_CODES, user_id, totp_id, "ok", caller)
        return totp_id, codes

    async def status(self, user_id: str) -> Status:
        now = self._now()
        active = await self._store.get_active(user_id)
        pending = await self._store.list_pending(user_id, now)
        remaining = await self._store.recovery_codes_remaining(user_id) if active else 0
        lockout = await self._store.lockout(user_id)
        return Status(
            active=Totp.of_active(active) if active else None,
            pending=tuple(Totp.of_pending(p) for p in sorted(pending, key=lambda p: p.create_time)),
            recovery_codes_remaining=remaining,
            lockout=lockout,
            locked=lockout.locked_at(now),
        )

    async def delete(self, user_id: str, totp_id: str | None, caller: str = "") -> bool:
        deleted_id = await self._store.delete(user_id, totp_id)
        if deleted_id is not None:
            await self._event(EventType.DELETE, user_id, deleted_id, "ok", caller)
        return deleted_id is not None

    # -- helpers -------------------------------------------------------------------------

    def _now(self) -> float:
        # Whole milliseconds, the store's resolution: a time reads back as it was returned.
        return round(self._clock(), 3)

    def _recovery_digest(self, code: str, user_id: str) -> bytes:
        """The digest of a code we made: its canonical form is itself without the dashes
        (tests/unit/test_recovery_codes.py pins that), no need to normalise it."""
        return self._keyring.digest(code.replace("-", ""), user_id)

    def _count_check(self, type_: EventType, result: CheckResult, matched: bool = False) -> None:
        """Count the audit events of a code check (``model.check_events``), which the
        store recorded along with its decision."""
        # A code of the window that the store rejected is one of an already used step.
        replayed = matched and result.outcome is CheckOutcome.REJECTED
        self._count_event(type_, "replayed" if replayed else result.outcome.value)
        if result.lock_engaged:
            self._count_event(EventType.LOCKOUT, result.lock_kind)

    async def _event(
        self, type_: EventType, user_id: str, totp_id: str, outcome: str, caller: str
    ) -> None:
        """Count and append an audit event of no store decision (the store records those
        of activate, check_code and use_recovery_code itself). The state change it reports
        has already happened, so a failure to record it is logged rather than turned into a
        failed RPC."""
        self._count_event(type_, outcome)
        event = Event(type_, user_id, totp_id, outcome, self._now(), caller)
        try:
            await self._store.append_event(event)
        except StoreUnavailable:
            log.warning(
                "audit event %s for %s was not recorded", type_.value, totp_id, exc_info=True
            )
