"""Domain types: the parameters and records of TOTP enrollments, free of gRPC and Redis."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Algorithm(enum.Enum):
    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"


class QrFormat(enum.Enum):
    PNG = "image/png"
    SVG = "image/svg+xml"


class TotpState(enum.Enum):
    PENDING = "pending"
    ACTIVE = "active"


@dataclass(frozen=True)
class TotpParams:
    """What an authenticator app needs besides the secret (RFC 6238 defaults)."""

    algorithm: Algorithm = Algorithm.SHA1
    digits: int = 6
    period: int = 30


@dataclass(frozen=True)
class CreateCommand:
    """A validated CreateTotp request."""

    user_id: str
    expiration_seconds: int
    issuer: str  # empty: the server's default issuer
    account_name: str  # never empty, never with a colon (the Key URI label separator)
    request_id: str
    params: TotpParams
    qr_format: QrFormat
    qr_size: int


@dataclass(frozen=True)
class SealedSecret:
    """A TOTP secret encrypted at rest: AES-256-GCM under the key named ``key_id``."""

    key_id: str
    blob: bytes  # nonce || ciphertext || tag


@dataclass(frozen=True)
class PendingRecord:
    """A pending enrollment as the store keeps it. Nothing in it is plaintext."""

    totp_id: str
    user_id: str
    params: TotpParams
    issuer: str
    account_name: str
    secret: SealedSecret
    #: The recovery codes, encrypted, kept only so an idempotent retry of CreateTotp can
    #: return them again; dropped on activation.
    sealed_recovery_codes: SealedSecret
    #: Keyed hashes of the recovery codes; these become usable on activation.
    recovery_hashes: tuple[bytes, ...]
    recovery_key_id: str
    request_fingerprint: str
    create_time: float
    expire_time: float
    failed_attempts: int = 0


@dataclass(frozen=True)
class ActiveRecord:
    """A user's active TOTP as the store keeps it."""

    totp_id: str
    user_id: str
    params: TotpParams
    issuer: str
    account_name: str
    secret: SealedSecret
    create_time: float
    activate_time: float
    #: The time step of the last accepted code; codes of this step or older are refused.
    last_step: int
    last_used_time: float | None = None


@dataclass(frozen=True)
class Totp:
    """The public view of an enrollment: never the secret."""

    totp_id: str
    user_id: str
    state: TotpState
    params: TotpParams
    issuer: str
    account_name: str
    create_time: float
    activate_time: float | None = None
    expire_time: float | None = None
    last_used_time: float | None = None

    @classmethod
    def of_pending(cls, record: PendingRecord) -> Totp:
        return cls(
            totp_id=record.totp_id,
            user_id=record.user_id,
            state=TotpState.PENDING,
            params=record.params,
            issuer=record.issuer,
            account_name=record.account_name,
            create_time=record.create_time,
            expire_time=record.expire_time,
        )

    @classmethod
    def of_active(cls, record: ActiveRecord) -> Totp:
        return cls(
            totp_id=record.totp_id,
            user_id=record.user_id,
            state=TotpState.ACTIVE,
            params=record.params,
            issuer=record.issuer,
            account_name=record.account_name,
            create_time=record.create_time,
            activate_time=record.activate_time,
            last_used_time=record.last_used_time,
        )


@dataclass(frozen=True)
class QrCode:
    image: bytes
    format: QrFormat


@dataclass(frozen=True)
class Enrollment:
    """The result of CreateTotp: the only time secret and recovery codes are shown."""

    totp: Totp
    secret: str
    otpauth_uri: str
    qr_code: QrCode
    recovery_codes: tuple[str, ...]


@dataclass(frozen=True)
class Activation:
    totp: Totp
    replaced_totp_id: str | None


@dataclass(frozen=True)
class Verification:
    totp_id: str
    time_step_offset: int


@dataclass(frozen=True)
class RecoveryCodeUse:
    totp_id: str
    remaining: int


@dataclass(frozen=True)
class Lockout:
    consecutive_failures: int = 0
    locked_until: float | None = None
    permanent: bool = False

    def locked_at(self, now: float) -> bool:
        return self.permanent or (self.locked_until is not None and self.locked_until > now)


@dataclass(frozen=True)
class Status:
    """The result of GetTotp."""

    active: Totp | None
    pending: tuple[Totp, ...]
    recovery_codes_remaining: int
    lockout: Lockout
    locked: bool  # whether checks are refused right now


@dataclass(frozen=True)
class LockoutPolicy:
    """When consecutive failed code checks lock a user out (NIST SP 800-63B 5.2.2)."""

    threshold: int = 5  # failures before the first lock
    base_seconds: float = 60.0  # the first lock; each further failure doubles it
    max_seconds: float = 3600.0
    permanent_after: int = 100  # NIST's ceiling: locked until deleted or re-enrolled


class CheckOutcome(enum.Enum):
    """What the store decided about one code check, atomically with recording it."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    LOCKED = "locked"
    NOT_FOUND = "not_found"
    #: The active TOTP changed between reading its secret and checking; read again.
    STALE = "stale"


@dataclass(frozen=True)
class CheckResult:
    outcome: CheckOutcome
    totp_id: str = ""
    #: LOCKED, or REJECTED with ``lock_engaged``: seconds until the lock lifts, None if
    #: it never lifts by itself.
    retry_after: float | None = None
    #: REJECTED: this failure started (or lengthened, or made permanent) a lock.
    lock_engaged: bool = False
    remaining: int = 0  # recovery codes left after an accepted recovery code

    @property
    def lock_kind(self) -> str:
        """The outcome of the LOCKOUT event of a failure that engaged a lock."""
        return "permanent" if self.retry_after is None else "temporary"


class ActivationOutcome(enum.Enum):
    ACTIVATED = "activated"
    REJECTED = "rejected"
    DISCARDED = "discarded"  # the failure that reached the attempt limit
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class ActivationResult:
    outcome: ActivationOutcome
    replaced_totp_id: str | None = None


class EventType(enum.Enum):
    """The action an audit event reports; its outcome says how it ended."""

    CREATE = "totp.create"  # ok
    ACTIVATE = "totp.activate"  # activated | rejected | discarded | not_found
    VERIFY = "totp.verify"  # accepted | rejected | locked | not_found
    USE_RECOVERY_CODE = "recovery_code.use"  # accepted | rejected | locked | not_found
    REGENERATE_RECOVERY_CODES = "recovery_codes.regenerate"  # ok
    DELETE = "totp.delete"  # ok
    LOCKOUT = "lockout.engage"  # temporary | permanent: a failure locked the user


@dataclass(frozen=True)
class Event:
    """An audit event: what happened to whose factor. Never a secret or a code."""

    type: EventType
    user_id: str
    totp_id: str
    outcome: str
    time: float
    caller: str = ""


def check_events(
    type_: EventType, user_id: str, result: CheckResult, time: float, caller: str
) -> tuple[Event, ...]:
    """The audit events of one code check (VERIFY or USE_RECOVERY_CODE): its outcome, then
    a LOCKOUT event if the failure engaged a lock; none for STALE, which the service checks
    again. The store records them along with the decision (``Store.check_code``)."""
    if result.outcome is CheckOutcome.STALE:
        return ()
    checked = Event(type_, user_id, result.totp_id, result.outcome.value, time, caller)
    if not result.lock_engaged:
        return (checked,)
    lock = Event(EventType.LOCKOUT, user_id, result.totp_id, result.lock_kind, time, caller)
    return (checked, lock)


def activation_events(
    user_id: str, totp_id: str, result: ActivationResult, time: float, caller: str
) -> tuple[Event, ...]:
    """The audit event of one activation attempt, whatever its outcome; recorded by the
    store with the decision, like ``check_events``."""
    return (Event(EventType.ACTIVATE, user_id, totp_id, result.outcome.value, time, caller),)


def creation_events(user_id: str, totp_id: str, time: float, caller: str) -> tuple[Event, ...]:
    """The audit event of a new pending enrollment (not of a retried CreateTotp, which
    makes none); recorded by the store as it saves the enrollment (``create.lua``)."""
    return (Event(EventType.CREATE, user_id, totp_id, "ok", time, caller),)
