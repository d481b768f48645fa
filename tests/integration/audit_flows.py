"""One fixed sequence of decisions that writes every kind of audit event, for comparing how
a store records them: in the deciding scripts (one server, Sentinel) or with XADDs of its
own after them (Redis Cluster; ``RedisStore(events_in_scripts=False)`` on one server).

The run is deterministic (its own clock from T0, totp ids numbered), so two runs over two
stores write byte-identical streams exactly when the stores record the same events.
"""

from __future__ import annotations

import itertools
from contextlib import suppress

import pytest

from tests.conftest import FakeClock
from tests.helpers import totp_code
from totpd import service as service_module
from totpd.errors import InvalidCode, TooManyAttempts, TotpNotFound
from totpd.keyring import Keyring
from totpd.model import CreateCommand, Enrollment, LockoutPolicy, QrFormat, TotpParams
from totpd.service import Policy, TotpService
from totpd.store.redis_store import RedisStore

STEP = 30
CALLER = "spiffe://billing"
# Small limits, so a few failures go through every lock: 2 failures lock for 1 s (then
# 2 s, ...), the 4th locks for good; the 2nd failed activation discards the enrollment.
POLICY = Policy(
    activation_max_attempts=2,
    lockout=LockoutPolicy(threshold=2, base_seconds=1, max_seconds=60, permanent_after=4),
)

#: (type, outcome) of every event ``run_decisions`` writes, in order.
EXPECTED = [
    ("totp.create", "ok"),
    ("totp.activate", "rejected"),
    ("totp.activate", "activated"),
    ("totp.verify", "accepted"),
    ("totp.verify", "rejected"),  # a replay
    ("recovery_code.use", "accepted"),
    ("recovery_code.use", "rejected"),
    ("totp.verify", "rejected"),
    ("lockout.engage", "temporary"),
    ("totp.verify", "locked"),
    ("recovery_code.use", "rejected"),
    ("lockout.engage", "temporary"),
    ("totp.verify", "rejected"),
    ("lockout.engage", "permanent"),
    ("recovery_code.use", "locked"),
    ("totp.create", "ok"),
    ("totp.activate", "activated"),  # replaces the locked factor
    ("totp.create", "ok"),
    ("totp.activate", "rejected"),
    ("totp.activate", "discarded"),
    ("totp.activate", "not_found"),  # the service finds no pending enrollment
    ("totp.activate", "not_found"),  # the script does
    ("totp.verify", "not_found"),  # the service finds no active factor
    ("totp.verify", "not_found"),  # the script does
    ("recovery_code.use", "not_found"),
    ("totp.delete", "ok"),
]
#: How many of those the service appends itself (no decision of the store's): the delete,
#: and the not_found found before any script ran. (create.lua records the creates.)
APPENDED_BY_THE_SERVICE = 3


def command(user_id: str, request_id: str = "") -> CreateCommand:
    return CreateCommand(
        user_id=user_id,
        expiration_seconds=600,
        issuer="",
        account_name=user_id,
        request_id=request_id,
        params=TotpParams(),
        qr_format=QrFormat.SVG,
        qr_size=64,
    )


def code_at(enrollment: Enrollment, at: float) -> str:
    return totp_code(enrollment.secret, at)


def wrong_code(enrollment: Enrollment, at: float) -> str:
    near = {code_at(enrollment, at + k * STEP) for k in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(100)) if c not in near)


async def run_decisions(store: RedisStore) -> None:
    """Drive the decisions of ``EXPECTED`` through a service over ``store``."""
    clock = FakeClock()
    numbered = (f"totp-{n:032x}" for n in itertools.count(1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_module, "new_totp_id", lambda: next(numbered))
        await _decide(TotpService(store, Keyring.generate(), POLICY, clock=clock), store, clock)


async def _decide(service: TotpService, store: RedisStore, clock: FakeClock) -> None:
    first = await service.create(command("alice"), CALLER)
    totp_id = first.totp.totp_id
    with suppress(InvalidCode):
        await service.activate("alice", totp_id, wrong_code(first, clock.now), CALLER)
    await service.activate("alice", totp_id, code_at(first, clock.now), CALLER)
    clock.advance(STEP)
    await service.verify("alice", code_at(first, clock.now))  # no caller: an empty field
    with suppress(InvalidCode):
        await service.verify("alice", code_at(first, clock.now), CALLER)
    await service.use_recovery_code("alice", first.recovery_codes[0], CALLER)
    with suppress(InvalidCode):
        await service.use_recovery_code("alice", first.recovery_codes[0], CALLER)
    with suppress(InvalidCode):  # the 2nd failure in a row: locked for 1 s
        await service.verify("alice", wrong_code(first, clock.now), CALLER)
    with suppress(TooManyAttempts):
        await service.verify("alice", wrong_code(first, clock.now), CALLER)
    clock.advance(1.5)
    with suppress(InvalidCode):  # the 3rd: locked for 2 s
        await service.use_recovery_code("alice", "zzzz-zzzz-zzzz", CALLER)
    clock.advance(2.5)
    with suppress(InvalidCode):  # the 4th: locked for good
        await service.verify("alice", wrong_code(first, clock.now), CALLER)
    with suppress(TooManyAttempts):
        await service.use_recovery_code("alice", first.recovery_codes[1], CALLER)

    second = await service.create(command("alice"), CALLER)
    await service.activate("alice", second.totp.totp_id, code_at(second, clock.now), CALLER)
    doomed = await service.create(command("alice"))
    for _ in range(2):
        with suppress(InvalidCode, TooManyAttempts):
            await service.activate("alice", doomed.totp.totp_id, wrong_code(doomed, clock.now))
    with suppress(TotpNotFound):
        await service.activate("alice", doomed.totp.totp_id, code_at(doomed, clock.now))
    # A pending enrollment or an active factor gone between the service's read and the
    # script: the script's own not_found.
    await store.activate("alice", "totp-gone", None, 2, clock.now, CALLER)
    with suppress(TotpNotFound):
        await service.verify("bob", "123456", CALLER)
    await store.check_code("bob", "totp-gone", None, clock.now, POLICY.lockout, CALLER)
    with suppress(TotpNotFound):
        await service.use_recovery_code("bob", "aaaa-bbbb-cccc", CALLER)
    # A factor replaced since the service read it: 'stale', which records nothing.
    await store.check_code("alice", totp_id, 1, clock.now, POLICY.lockout, CALLER)
    await service.delete("alice", None, CALLER)
