"""GetTotp (the state of a user's factors, never a secret) and DeleteTotp."""

from __future__ import annotations

from google.protobuf import duration_pb2

from tests.conftest import Totpd
from tests.helpers import totp_code
from tests.integration.flows import (
    STEP,
    TOTP_NOT_FOUND,
    activate,
    create,
    enroll,
    fail_verify,
    get,
    rpc_error,
    seconds,
    secret_forms,
    use_recovery_code,
    verify_at,
)
from totpd.v1 import totp_service_pb2 as pb


async def delete(totpd: Totpd, user_id: str, totp_id: str = "") -> pb.DeleteTotpResponse:
    return await totpd.stub.DeleteTotp(pb.DeleteTotpRequest(user_id=user_id, totp_id=totp_id))


def assert_no_secrets(response: pb.GetTotpResponse, *enrollments: pb.CreateTotpResponse) -> None:
    blob = response.SerializeToString()
    for created in enrollments:
        for form in secret_forms(created):
            assert form not in blob


# -- GetTotp ------------------------------------------------------------------------------


async def test_unknown_user_gets_an_empty_response(totpd: Totpd) -> None:
    state = await get(totpd, "nobody")

    assert not state.HasField("active_totp")
    assert list(state.pending_totps) == []
    assert state.recovery_codes_remaining == 0
    assert state.lockout.consecutive_failures == 0
    assert not state.lockout.locked
    assert not state.lockout.permanent
    assert not state.lockout.HasField("lock_expire_time")


async def test_pending_enrollments_are_listed_oldest_first_without_secrets(
    totpd: Totpd,
) -> None:
    t0 = totpd.clock.now
    first = await create(totpd, "alice", expiration_minutes=60)
    totpd.clock.advance(10)
    second = await create(totpd, "alice", expiration_minutes=5, account_name="alice@phone")

    state = await get(totpd, "alice")

    assert not state.HasField("active_totp")
    assert [p.totp_id for p in state.pending_totps] == [first.totp_id, second.totp_id]
    one, two = state.pending_totps
    assert one.state == two.state == pb.TOTP_STATE_PENDING
    assert one.user_id == "alice"
    assert seconds(one.create_time) == t0
    assert seconds(one.expire_time) == t0 + 60 * 60
    assert seconds(two.create_time) == t0 + 10
    assert seconds(two.expire_time) == t0 + 10 + 5 * 60
    assert not one.HasField("activate_time")
    assert two.account_name == "alice@phone"
    assert state.recovery_codes_remaining == 0
    assert_no_secrets(state, first, second)


async def test_expired_pending_enrollment_is_not_listed(totpd: Totpd) -> None:
    await create(totpd, "alice", expiration_minutes=5)
    lasting = await create(totpd, "alice", expiration_minutes=60)
    totpd.clock.advance(5 * 60 + 1)

    state = await get(totpd, "alice")

    assert [p.totp_id for p in state.pending_totps] == [lasting.totp_id]


async def test_active_totp_with_its_times_parameters_and_codes_left(totpd: Totpd) -> None:
    t0 = totpd.clock.now
    created = await create(
        totpd,
        "alice",
        algorithm=pb.TOTP_ALGORITHM_SHA256,
        digits=8,
        period=duration_pb2.Duration(seconds=60),
        issuer="Example",
    )
    totpd.clock.advance(15)
    await totpd.stub.ActivateTotp(
        pb.ActivateTotpRequest(
            user_id="alice",
            totp_id=created.totp_id,
            code=totp_code(
                created.secret, totpd.clock.now, digits=8, period=60, algorithm="SHA256"
            ),
        )
    )
    activated_at = totpd.clock.now
    totpd.clock.advance(60)
    code = totp_code(created.secret, totpd.clock.now, digits=8, period=60, algorithm="SHA256")
    await totpd.stub.VerifyTotp(pb.VerifyTotpRequest(user_id="alice", code=code))
    await use_recovery_code(totpd, "alice", created.recovery_codes[0])

    state = await get(totpd, "alice")

    active = state.active_totp
    assert active.totp_id == created.totp_id
    assert active.user_id == "alice"
    assert active.state == pb.TOTP_STATE_ACTIVE
    assert active.algorithm == pb.TOTP_ALGORITHM_SHA256
    assert active.digits == 8
    assert active.period.ToSeconds() == 60
    assert active.issuer == "Example"
    assert active.account_name == "alice"
    assert seconds(active.create_time) == t0
    assert seconds(active.activate_time) == activated_at
    assert seconds(active.last_used_time) == totpd.clock.now
    assert not active.HasField("expire_time")
    assert list(state.pending_totps) == []
    assert state.recovery_codes_remaining == 9
    assert_no_secrets(state, created)


async def test_active_and_pending_together(totpd: Totpd) -> None:
    active = await enroll(totpd, "alice")
    pending = await create(totpd, "alice")

    state = await get(totpd, "alice")

    assert state.active_totp.totp_id == active.totp_id
    assert [p.totp_id for p in state.pending_totps] == [pending.totp_id]
    assert state.recovery_codes_remaining == 10
    assert_no_secrets(state, active, pending)


async def test_lockout_state(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    for _ in range(5):
        await fail_verify(totpd, enrolled)

    lockout = (await get(totpd, "alice")).lockout

    assert lockout.locked
    assert lockout.consecutive_failures == 5
    assert seconds(lockout.lock_expire_time) == totpd.clock.now + 60
    assert not lockout.permanent
    # Once the lock has lifted, it says so, and still counts the failures.
    totpd.clock.advance(60)
    lifted = (await get(totpd, "alice")).lockout
    assert not lifted.locked
    assert not lifted.HasField("lock_expire_time")
    assert lifted.consecutive_failures == 5


# -- DeleteTotp ---------------------------------------------------------------------------


async def test_delete_removes_the_active_totp_and_its_recovery_codes(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    await fail_verify(totpd, enrolled)

    assert (await delete(totpd, "alice")).deleted

    totpd.clock.advance(STEP)
    verify_error = await rpc_error(verify_at(totpd, enrolled, totpd.clock.now))
    recovery_error = await rpc_error(use_recovery_code(totpd, "alice", enrolled.recovery_codes[0]))
    assert (verify_error.code, verify_error.reason) == TOTP_NOT_FOUND
    assert (recovery_error.code, recovery_error.reason) == TOTP_NOT_FOUND
    state = await get(totpd, "alice")
    assert not state.HasField("active_totp")
    assert state.recovery_codes_remaining == 0
    assert state.lockout.consecutive_failures == 0


async def test_delete_by_the_active_totp_id(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")

    assert (await delete(totpd, "alice", enrolled.totp_id)).deleted

    assert not (await get(totpd, "alice")).HasField("active_totp")


async def test_delete_of_the_active_totp_keeps_pending_enrollments(totpd: Totpd) -> None:
    await enroll(totpd, "alice")
    pending = await create(totpd, "alice")

    await delete(totpd, "alice")

    assert [p.totp_id for p in (await get(totpd, "alice")).pending_totps] == [pending.totp_id]
    activated = await activate(totpd, pending)
    assert activated.replaced_totp_id == ""


async def test_delete_of_one_pending_enrollment_keeps_the_active_totp(totpd: Totpd) -> None:
    active = await enroll(totpd, "alice")
    doomed = await create(totpd, "alice")
    kept = await create(totpd, "alice")

    assert (await delete(totpd, "alice", doomed.totp_id)).deleted

    error = await rpc_error(activate(totpd, doomed))
    assert (error.code, error.reason) == TOTP_NOT_FOUND
    state = await get(totpd, "alice")
    assert state.active_totp.totp_id == active.totp_id
    assert [p.totp_id for p in state.pending_totps] == [kept.totp_id]
    assert state.recovery_codes_remaining == 10
    totpd.clock.advance(STEP)
    assert (await verify_at(totpd, active, totpd.clock.now)).totp_id == active.totp_id


async def test_delete_is_idempotent(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    pending = await create(totpd, "alice")

    assert (await delete(totpd, "alice")).deleted
    assert not (await delete(totpd, "alice")).deleted
    assert not (await delete(totpd, "alice", enrolled.totp_id)).deleted
    assert (await delete(totpd, "alice", pending.totp_id)).deleted
    assert not (await delete(totpd, "alice", pending.totp_id)).deleted
    assert not (await delete(totpd, "nobody")).deleted
    assert not (await delete(totpd, "nobody", "totp-unknown")).deleted


async def test_delete_of_another_users_enrollment_deletes_nothing(totpd: Totpd) -> None:
    alice = await enroll(totpd, "alice")
    alice_pending = await create(totpd, "alice")
    await enroll(totpd, "bob")

    assert not (await delete(totpd, "bob", alice.totp_id)).deleted
    assert not (await delete(totpd, "bob", alice_pending.totp_id)).deleted

    state = await get(totpd, "alice")
    assert state.active_totp.totp_id == alice.totp_id
    assert [p.totp_id for p in state.pending_totps] == [alice_pending.totp_id]
    assert (await get(totpd, "bob")).HasField("active_totp")
