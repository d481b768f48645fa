"""The audit trail in the Redis stream ``totpd:events``, and what Redis never holds.

Each event has the fields type, user_id, totp_id, outcome, time (ms of the server's clock)
and caller (the TLS identity of the calling service; empty over these insecure channels).
Code checks are recorded as ``totp.verify`` / ``recovery_code.use`` with the outcome
of the check (accepted, rejected, or locked when refused by a lock); the failure that
starts a lock adds a ``lockout.engage`` event (temporary or permanent).
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import StartTotpd, Totpd
from tests.helpers import totp_code
from tests.integration.flows import (
    STEP,
    activate,
    create,
    dump_redis,
    enroll,
    events,
    get,
    outcomes,
    rpc_error,
    secret_forms,
    use_recovery_code,
    verify,
    wrong_code,
)
from totpd.model import LockoutPolicy
from totpd.service import Policy
from totpd.store.keys import RECOVERY_FIELD_PREFIX
from totpd.v1 import totp_service_pb2 as pb

FIELDS = {"type", "user_id", "totp_id", "outcome", "time", "caller"}


def ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def summary(recorded: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(e["type"], e["outcome"]) for e in recorded]


async def test_lifecycle_of_an_active_totp_is_recorded(totpd: Totpd) -> None:
    t0 = totpd.clock.now
    created = await create(totpd, "alice")
    wrong = wrong_code(created, t0)
    await rpc_error(
        totpd.stub.ActivateTotp(
            pb.ActivateTotpRequest(user_id="alice", totp_id=created.totp_id, code=wrong)
        )
    )
    await activate(totpd, created)
    totpd.clock.advance(STEP)
    t1 = totpd.clock.now
    await verify(totpd, "alice", totp_code(created.secret, t1))
    await rpc_error(verify(totpd, "alice", wrong))
    await use_recovery_code(totpd, "alice", created.recovery_codes[0])
    await totpd.stub.RegenerateRecoveryCodes(pb.RegenerateRecoveryCodesRequest(user_id="alice"))
    totpd.clock.advance(1)
    for _ in range(5):
        await rpc_error(verify(totpd, "alice", wrong))
    await rpc_error(verify(totpd, "alice", totp_code(created.secret, totpd.clock.now)))
    totpd.clock.advance(1)
    await totpd.stub.DeleteTotp(pb.DeleteTotpRequest(user_id="alice", totp_id=created.totp_id))

    recorded = await events(totpd.redis)

    assert summary(recorded) == [
        ("totp.create", "ok"),
        ("totp.activate", "rejected"),
        ("totp.activate", "activated"),
        ("totp.verify", "accepted"),
        ("totp.verify", "rejected"),
        ("recovery_code.use", "accepted"),
        ("recovery_codes.regenerate", "ok"),
        *[("totp.verify", "rejected")] * 5,
        ("lockout.engage", "temporary"),
        ("totp.verify", "locked"),
        ("totp.delete", "ok"),
    ]
    for event in recorded:
        assert set(event) == FIELDS
        assert event["user_id"] == "alice"
        assert event["totp_id"] == created.totp_id
        assert event["caller"] == ""
    assert [e["time"] for e in recorded] == (
        [ms(t0)] * 3 + [ms(t1)] * 4 + [ms(t1 + 1)] * 7 + [ms(t1 + 2)]
    )


async def test_replacing_and_deleting_pending_enrollments_are_recorded(totpd: Totpd) -> None:
    old = await enroll(totpd, "alice")
    new = await create(totpd, "alice")
    doomed = await create(totpd, "alice")
    await activate(totpd, new)
    await totpd.stub.DeleteTotp(pb.DeleteTotpRequest(user_id="alice", totp_id=doomed.totp_id))

    recorded = await events(totpd.redis)

    assert [(e["type"], e["totp_id"], e["outcome"]) for e in recorded] == [
        ("totp.create", old.totp_id, "ok"),
        ("totp.activate", old.totp_id, "activated"),
        ("totp.create", new.totp_id, "ok"),
        ("totp.create", doomed.totp_id, "ok"),
        ("totp.activate", new.totp_id, "activated"),
        ("totp.delete", doomed.totp_id, "ok"),
    ]


async def test_concurrent_checks_record_one_event_each(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(STEP)
    code = totp_code(enrolled.secret, totpd.clock.now)
    before = len(await events(totpd.redis))

    results = await outcomes(verify(totpd, "alice", code) for _ in range(20))

    recorded = summary((await events(totpd.redis))[before:])
    checks = [r for r in recorded if r[0] == "totp.verify"]
    assert len(checks) == 20
    assert recorded.count(("lockout.engage", "temporary")) == 1  # the 5th failure
    assert recorded.count(("totp.verify", "accepted")) == results.count("OK") == 1
    assert recorded.count(("totp.verify", "rejected")) == results.count("INVALID_CODE")
    assert recorded.count(("totp.verify", "locked")) == results.count("TOO_MANY_ATTEMPTS")


async def test_deleting_nothing_records_nothing(totpd: Totpd) -> None:
    await totpd.stub.DeleteTotp(pb.DeleteTotpRequest(user_id="nobody"))
    await totpd.stub.DeleteTotp(pb.DeleteTotpRequest(user_id="nobody", totp_id="totp-x"))

    assert await events(totpd.redis) == []


async def test_reads_are_not_recorded(totpd: Totpd) -> None:
    await enroll(totpd, "alice")
    before = await events(totpd.redis)

    await get(totpd, "alice")
    await get(totpd, "nobody")

    assert await events(totpd.redis) == before


async def test_deleting_the_active_totp_records_its_id(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")

    await totpd.stub.DeleteTotp(pb.DeleteTotpRequest(user_id="alice"))

    deleted = (await events(totpd.redis))[-1]
    assert (deleted["type"], deleted["outcome"]) == ("totp.delete", "ok")
    assert deleted["totp_id"] == enrolled.totp_id


async def test_failed_recovery_code_events_name_the_factor(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    for _ in range(6):
        await rpc_error(use_recovery_code(totpd, "alice", "aaaa-bbbb-cccc"))

    recorded = (await events(totpd.redis))[-7:]

    assert summary(recorded) == [("recovery_code.use", "rejected")] * 5 + [
        ("lockout.engage", "temporary"),
        ("recovery_code.use", "locked"),
    ]
    assert [e["totp_id"] for e in recorded] == [enrolled.totp_id] * 7


async def test_a_permanent_lock_is_recorded(start_totpd: StartTotpd) -> None:
    totpd = await start_totpd(
        Policy(lockout=LockoutPolicy(threshold=2, permanent_after=3, base_seconds=1))
    )
    enrolled = await enroll(totpd, "alice")
    for _ in range(3):
        totpd.clock.advance(2)  # past any temporary lock, so each failure is evaluated
        await rpc_error(use_recovery_code(totpd, "alice", "aaaa-bbbb-cccc"))

    recorded = [e for e in await events(totpd.redis) if e["type"] == "lockout.engage"]

    assert [e["outcome"] for e in recorded] == ["temporary", "permanent"]
    assert {e["totp_id"] for e in recorded} == {enrolled.totp_id}


# -- what is never stored ---------------------------------------------------------------

_DIGITS = re.compile(rb"[0-9]+")


def assert_nothing_secret(
    values: list[bytes], enrollments: list[pb.CreateTotpResponse], codes: list[str]
) -> None:
    """No value contains a secret, an otpauth URI or a recovery code of ``enrollments``
    in any spelling, nor is any run of digits in it one of the TOTP ``codes``."""
    forbidden = [form.lower() for e in enrollments for form in secret_forms(e)]
    for value in values:
        lowered = value.lower()
        for form in forbidden:
            assert form not in lowered
        # A 6-digit code may occur inside a longer number (a timestamp): only a whole
        # run of digits counts.
        assert not set(_DIGITS.findall(value)) & {c.encode() for c in codes}


async def test_no_secret_code_or_uri_anywhere_in_redis(totpd: Totpd) -> None:
    """Drive every RPC, then read back every key and value of every type in Redis."""
    first = await enroll(totpd, "alice")
    active = await enroll(totpd, "alice")  # replaces the first one
    pending = await create(totpd, "alice", request_id="retry-1")
    other = await enroll(totpd, "bob")
    codes = [totp_code(e.secret, totpd.clock.now) for e in (first, active, pending, other)]
    totpd.clock.advance(STEP)
    used = totp_code(active.secret, totpd.clock.now)
    await verify(totpd, "alice", used)
    wrong = wrong_code(active, totpd.clock.now)
    await rpc_error(verify(totpd, "alice", wrong))
    await use_recovery_code(totpd, "alice", active.recovery_codes[0].upper())
    await use_recovery_code(totpd, "alice", active.recovery_codes[1].replace("-", ""))
    await rpc_error(use_recovery_code(totpd, "alice", pending.recovery_codes[0]))
    regenerated = await totpd.stub.RegenerateRecoveryCodes(
        pb.RegenerateRecoveryCodesRequest(user_id="alice")
    )
    await use_recovery_code(totpd, "alice", regenerated.recovery_codes[0])
    await rpc_error(verify(totpd, "alice", wrong))  # leaves a lockout record
    await get(totpd, "alice")
    await totpd.stub.DeleteTotp(pb.DeleteTotpRequest(user_id="bob"))
    codes += [used, wrong]
    # The regenerated codes, as an enrollment-shaped bundle of things never to store.
    new_codes = pb.CreateTotpResponse(recovery_codes=regenerated.recovery_codes)
    enrollments = [first, active, pending, other, new_codes]

    stored = await dump_redis(totpd.redis)

    # The dump does see the records (the recovery code digests are fields of the active
    # hash), and the check does find what a response shows.
    assert {b"pending", b"active", b"lockout", b"events"} <= {
        key.rsplit(b":", 1)[-1] for key in stored if key.startswith(b"totpd:")
    }
    assert any(len(item) == 33 and item.startswith(RECOVERY_FIELD_PREFIX) for item in stored)
    for leaky in (pending, regenerated):
        with pytest.raises(AssertionError):
            assert_nothing_secret([leaky.SerializeToString()], enrollments, codes)
    with pytest.raises(AssertionError):
        assert_nothing_secret([f"x{used}x".encode()], enrollments, codes)
    assert_nothing_secret(stored, enrollments, codes)


async def test_no_secret_or_code_in_any_event_field(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(STEP)
    code = totp_code(enrolled.secret, totpd.clock.now)
    await verify(totpd, "alice", code)
    await rpc_error(verify(totpd, "alice", code))
    await use_recovery_code(totpd, "alice", enrolled.recovery_codes[0])
    await rpc_error(use_recovery_code(totpd, "alice", enrolled.recovery_codes[0]))

    recorded = await events(totpd.redis)

    assert len(recorded) == 6
    values = [v.encode() for event in recorded for v in event.values()]
    assert_nothing_secret(values, [enrolled], [code])
