"""VerifyTotp against an active TOTP: the time window, replay protection (also under
concurrency, through one and two servers) and the errors of users without an active TOTP.

Enrolling uses up the time step of the activation code, so each test first moves the
clock to where the step it verifies is newer than that one.
"""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2

from tests.conftest import StartTotpd, Totpd
from tests.helpers import totp_code
from tests.integration.flows import (
    INVALID_CODE,
    STEP,
    TOTP_NOT_FOUND,
    create,
    enroll,
    fail_verify,
    get,
    outcomes,
    rpc_error,
    verify,
    verify_at,
    wrong_code,
)
from totpd.service import Policy
from totpd.v1 import totp_service_pb2 as pb


async def test_current_code_is_accepted_with_offset_zero(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(STEP)

    response = await verify_at(totpd, enrolled, totpd.clock.now)

    assert response.totp_id == enrolled.totp_id
    assert response.time_step_offset == 0


async def test_code_of_next_step_is_accepted_with_offset_plus_one(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")

    response = await verify_at(totpd, enrolled, totpd.clock.now + STEP)

    assert response.totp_id == enrolled.totp_id
    assert response.time_step_offset == 1


async def test_code_of_previous_step_is_accepted_with_offset_minus_one(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(2 * STEP)  # the previous step is still newer than the activation's

    response = await verify_at(totpd, enrolled, totpd.clock.now - STEP)

    assert response.totp_id == enrolled.totp_id
    assert response.time_step_offset == -1


async def test_codes_two_steps_away_are_out_of_the_window(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(4 * STEP)  # t-60 s is two steps newer than the activation's
    now = totpd.clock.now

    for at in (now - 2 * STEP, now + 2 * STEP):
        error = await rpc_error(verify_at(totpd, enrolled, at))
        assert (error.code, error.reason) == INVALID_CODE

    # Refused for the window, not as replays: the current code is still good.
    assert (await verify_at(totpd, enrolled, now)).time_step_offset == 0


async def test_wrong_code_is_invalid_and_counts_as_a_failure(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(STEP)

    error = await rpc_error(verify(totpd, "alice", wrong_code(enrolled, totpd.clock.now)))

    assert (error.code, error.reason) == INVALID_CODE
    assert error.domain == "totpd"
    assert (await get(totpd, "alice")).lockout.consecutive_failures == 1


async def test_accepted_code_cannot_be_replayed(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(STEP)
    code = totp_code(enrolled.secret, totpd.clock.now)
    await verify(totpd, "alice", code)

    error = await rpc_error(verify(totpd, "alice", code))
    # Still inside the window a step later, still refused.
    totpd.clock.advance(STEP)
    later = await rpc_error(verify(totpd, "alice", code))

    assert (error.code, error.reason) == INVALID_CODE
    assert (later.code, later.reason) == INVALID_CODE


async def test_older_code_after_a_newer_one_is_refused(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(2 * STEP)
    now = totpd.clock.now
    assert (await verify_at(totpd, enrolled, now)).time_step_offset == 0

    # Never used and inside the window, but older than the accepted one.
    error = await rpc_error(verify_at(totpd, enrolled, now - STEP))

    assert (error.code, error.reason) == INVALID_CODE


async def test_newer_code_after_an_accepted_one_is_accepted(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(2 * STEP)
    now = totpd.clock.now
    assert (await verify_at(totpd, enrolled, now - STEP)).time_step_offset == -1

    assert (await verify_at(totpd, enrolled, now)).time_step_offset == 0
    assert (await verify_at(totpd, enrolled, now + STEP)).time_step_offset == 1


async def test_activation_code_cannot_be_replayed_as_the_first_verification(
    totpd: Totpd,
) -> None:
    created = await create(totpd, "alice")
    code = totp_code(created.secret, totpd.clock.now)
    await totpd.stub.ActivateTotp(
        pb.ActivateTotpRequest(user_id="alice", totp_id=created.totp_id, code=code)
    )

    error = await rpc_error(verify(totpd, "alice", code))

    assert (error.code, error.reason) == INVALID_CODE


async def test_fifty_concurrent_identical_verifications_accept_exactly_one(
    totpd: Totpd,
) -> None:
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(STEP)
    code = totp_code(enrolled.secret, totpd.clock.now)

    results = await outcomes(verify(totpd, "alice", code) for _ in range(50))

    assert results.count("OK") == 1
    assert set(results) - {"OK"} <= {"INVALID_CODE", "TOO_MANY_ATTEMPTS"}


async def test_fifty_concurrent_verifications_through_two_servers_accept_exactly_one(
    start_totpd: StartTotpd,
) -> None:
    first, second = await start_totpd(), await start_totpd()
    enrolled = await enroll(first, "alice")
    first.clock.advance(STEP)
    code = totp_code(enrolled.secret, first.clock.now)

    calls = [verify(server, "alice", code) for _ in range(25) for server in (first, second)]
    results = await outcomes(calls)

    assert results.count("OK") == 1
    assert set(results) - {"OK"} <= {"INVALID_CODE", "TOO_MANY_ATTEMPTS"}


async def test_user_without_any_totp_is_not_found(totpd: Totpd) -> None:
    error = await rpc_error(verify(totpd, "nobody", "123456"))

    assert (error.code, error.reason) == TOTP_NOT_FOUND


async def test_pending_enrollment_does_not_verify(totpd: Totpd) -> None:
    created = await create(totpd, "alice")
    totpd.clock.advance(STEP)

    error = await rpc_error(verify_at(totpd, created, totpd.clock.now))

    assert (error.code, error.reason) == TOTP_NOT_FOUND


async def test_pending_enrollment_does_not_verify_while_another_is_active(
    totpd: Totpd,
) -> None:
    await enroll(totpd, "alice")
    pending = await create(totpd, "alice")
    totpd.clock.advance(STEP)

    error = await rpc_error(verify_at(totpd, pending, totpd.clock.now))

    assert (error.code, error.reason) == INVALID_CODE


async def test_window_zero_refuses_the_previous_step(start_totpd: StartTotpd) -> None:
    totpd = await start_totpd(Policy(verify_window=0))
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(3 * STEP)
    now = totpd.clock.now

    for at in (now - STEP, now + STEP):
        error = await rpc_error(verify_at(totpd, enrolled, at))
        assert (error.code, error.reason) == INVALID_CODE
    assert (await verify_at(totpd, enrolled, now)).time_step_offset == 0


async def test_window_two_accepts_two_steps_back(start_totpd: StartTotpd) -> None:
    totpd = await start_totpd(Policy(verify_window=2))
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(3 * STEP)

    response = await verify_at(totpd, enrolled, totpd.clock.now - 2 * STEP)

    assert response.time_step_offset == -2


async def test_window_two_still_refuses_three_steps_away(start_totpd: StartTotpd) -> None:
    totpd = await start_totpd(Policy(verify_window=2))
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(4 * STEP)

    error = await rpc_error(verify_at(totpd, enrolled, totpd.clock.now - 3 * STEP))

    assert (error.code, error.reason) == INVALID_CODE


async def test_success_updates_last_used_time(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    assert not (await get(totpd, "alice")).active_totp.HasField("last_used_time")
    totpd.clock.advance(STEP)
    await verify_at(totpd, enrolled, totpd.clock.now)

    active = (await get(totpd, "alice")).active_totp

    assert active.last_used_time.ToSeconds() == int(totpd.clock.now)


async def test_failure_does_not_update_last_used_time(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    totpd.clock.advance(STEP)
    await fail_verify(totpd, enrolled)

    assert not (await get(totpd, "alice")).active_totp.HasField("last_used_time")


async def test_sixty_second_steps_with_eight_digit_sha512_codes(totpd: Totpd) -> None:
    created = await create(
        totpd,
        "alice",
        algorithm=pb.TOTP_ALGORITHM_SHA512,
        digits=8,
        period=duration_pb2.Duration(seconds=60),
    )

    def code(at: float) -> str:
        return totp_code(created.secret, at, digits=8, period=60, algorithm="SHA512")

    await totpd.stub.ActivateTotp(
        pb.ActivateTotpRequest(user_id="alice", totp_id=created.totp_id, code=code(totpd.clock.now))
    )
    totpd.clock.advance(3 * 60)
    now = totpd.clock.now

    too_old = await rpc_error(verify(totpd, "alice", code(now - 120)))
    six_digits = await rpc_error(verify(totpd, "alice", code(now)[2:]))
    previous = await verify(totpd, "alice", code(now - 60))
    next_ = await verify(totpd, "alice", code(now + 60))

    assert (too_old.code, too_old.reason) == INVALID_CODE
    assert (six_digits.code, six_digits.reason) == INVALID_CODE
    assert previous.time_step_offset == -1
    assert next_.time_step_offset == 1


async def test_malformed_code_is_an_invalid_request_and_not_a_failure(totpd: Totpd) -> None:
    await enroll(totpd, "alice")

    for malformed in ("12345", "1234567", "12345a", "１２３４５６"):
        error = await rpc_error(verify(totpd, "alice", malformed))
        assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
        assert "code" in error.field_violations

    assert (await get(totpd, "alice")).lockout.consecutive_failures == 0
