"""The domain's exceptions. Only the gRPC layer knows which status code each becomes.

    TotpdError
    ├── InvalidRequest          malformed input; carries one violation per field
    ├── TotpNotFound            no such enrollment / no active TOTP for the user
    ├── InvalidCode             wrong, reused or out-of-window code (one answer for all)
    ├── TooManyAttempts         attempt limit reached; may say when to retry
    ├── RequestIdAlreadyUsed    idempotency key names a finished or different request
    └── StoreUnavailable        the store could not be reached or timed out

Messages never contain a secret, a code, a recovery code or an otpauth URI.
"""

from __future__ import annotations

from dataclasses import dataclass


class TotpdError(Exception):
    """Base of every error the service raises on purpose."""


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field, named as in the proto (e.g. ``period``)."""

    field: str
    description: str


class InvalidRequest(TotpdError):
    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


class TotpNotFound(TotpdError):
    pass


class InvalidCode(TotpdError):
    pass


class TooManyAttempts(TotpdError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        #: Seconds until a check may succeed again; None when the lock does not lift
        #: by itself (the enrollment was discarded, or the factor is locked for good).
        self.retry_after = retry_after
        super().__init__(message)


class RequestIdAlreadyUsed(TotpdError):
    pass


class StoreUnavailable(TotpdError):
    pass
