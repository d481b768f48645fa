"""The storage port: what the service needs from a store, and nothing of how it is kept.

Every method that decides something (activate, check, consume) does it atomically with
recording it, so concurrent requests through any number of server processes see one order.
Implementations raise ``StoreUnavailable`` when they cannot answer.

Audit events: a deciding method also records the decision's audit events (built by
``model.activation_events`` / ``model.check_events`` from its result, at ``now``, naming
``caller``), because only the store knows whether it can write them in the same atomic step
as the decision (the Redis store can, except on Redis Cluster). Every other event (create,
regenerate, delete, a check or activation refused before any decision is made) the service
records with ``append_event``.
"""

from __future__ import annotations

from typing import Protocol

from ..model import (
    ActivationResult,
    ActiveRecord,
    CheckResult,
    Event,
    Lockout,
    LockoutPolicy,
    PendingRecord,
)


class Store(Protocol):
    async def create_pending(
        self, record: PendingRecord, request_id: str, caller: str = ""
    ) -> str | None:
        """Save a pending enrollment that expires at ``record.expire_time``, and record its
        audit event (``model.creation_events``) with it.

        With a ``request_id`` that already names an enrollment of the user, save nothing
        (and record no event) and return that enrollment's id instead.
        """

    async def get_pending(self, user_id: str, totp_id: str) -> PendingRecord | None: ...

    async def activate(
        self,
        user_id: str,
        totp_id: str,
        matched_step: int | None,
        max_attempts: int,
        now: float,
        caller: str = "",
    ) -> ActivationResult:
        """Promote the pending enrollment if ``matched_step`` is set, else count a failure.

        Promotion replaces the user's active TOTP, its recovery codes and lockout state in
        the same step; ``matched_step`` becomes the last used step. The failure that
        reaches ``max_attempts`` discards the enrollment. Records the attempt's audit event
        (``model.activation_events``).
        """

    async def get_active(self, user_id: str) -> ActiveRecord | None: ...

    async def check_code(
        self,
        user_id: str,
        totp_id: str,
        matched_step: int | None,
        now: float,
        policy: LockoutPolicy,
        caller: str = "",
    ) -> CheckResult:
        """Accept ``matched_step`` if the user is not locked out and it is newer than the
        last accepted step; otherwise record a failure under ``policy``. Records the
        check's audit events (``model.check_events`` of VERIFY; none for STALE)."""

    async def use_recovery_code(
        self,
        user_id: str,
        digests: list[bytes],
        now: float,
        policy: LockoutPolicy,
        caller: str = "",
    ) -> CheckResult:
        """Consume the first stored recovery code among ``digests``, or record a failure.
        Records the check's audit events (``model.check_events`` of USE_RECOVERY_CODE)."""

    async def replace_recovery_codes(
        self, user_id: str, key_id: str, digests: list[bytes]
    ) -> str | None:
        """Replace every recovery code of the active TOTP with ``digests`` (made under the
        hashing key ``key_id``); the TOTP's id, or None if the user has none."""

    async def list_pending(self, user_id: str, now: float) -> list[PendingRecord]: ...

    async def recovery_codes_remaining(self, user_id: str) -> int: ...

    async def lockout(self, user_id: str) -> Lockout: ...

    async def delete(self, user_id: str, totp_id: str | None) -> str | None:
        """Delete the active TOTP (``totp_id`` None or its id) or one pending enrollment;
        the id of what was deleted, or None if there was nothing."""

    async def append_event(self, event: Event) -> None:
        """Record an audit event that no deciding method records itself."""

    async def ping(self) -> bool: ...
