"""The per-user lockout after consecutive failed checks (NIST SP 800-63B 5.2.2).

Policy defaults: the 5th consecutive failure locks for 60 s, each further failure doubles
the lock up to 3600 s, and the 100th locks for good until the factor is deleted or
replaced. Failed TOTP codes and failed recovery codes count toward the same lock.
"""

from __future__ import annotations

from tests.conftest import FakeClock, StartTotpd, Totpd
from tests.integration.flows import (
    INVALID_CODE,
    LOCKED,
    STEP,
    activate,
    create,
    enroll,
    fail_verify,
    get,
    outcomes,
    own_server,
    rpc_error,
    use_recovery_code,
    verify,
    verify_at,
    wrong_code,
)
from totpd.embedded_redis import EmbeddedRedis
from totpd.keyring import Keyring
from totpd.model import LockoutPolicy
from totpd.service import Policy
from totpd.store.redis_store import connect
from totpd.v1 import totp_service_pb2 as pb


async def enroll_and_fail(
    totpd: Totpd, failures: int, user_id: str = "alice"
) -> pb.CreateTotpResponse:
    """An active TOTP whose user then failed ``failures`` times in a row, at one instant
    a step after the activation (so the current code is still unused)."""
    enrolled = await enroll(totpd, user_id)
    totpd.clock.advance(STEP)
    for _ in range(failures):
        error = await fail_verify(totpd, enrolled)
        assert (error.code, error.reason) == INVALID_CODE
    return enrolled


async def test_four_failures_do_not_lock(totpd: Totpd) -> None:
    enrolled = await enroll_and_fail(totpd, 4)

    state = await get(totpd, "alice")
    assert state.lockout.consecutive_failures == 4
    assert not state.lockout.locked
    assert (await verify_at(totpd, enrolled, totpd.clock.now)).time_step_offset == 0


async def test_fifth_failure_locks_even_a_correct_code_out_for_60_seconds(
    totpd: Totpd,
) -> None:
    enrolled = await enroll_and_fail(totpd, 5)

    error = await rpc_error(verify_at(totpd, enrolled, totpd.clock.now))

    assert (error.code, error.reason) == LOCKED
    assert error.retry_delay == 60
    state = await get(totpd, "alice")
    assert state.lockout.locked
    assert not state.lockout.permanent
    assert state.lockout.consecutive_failures == 5
    assert state.lockout.lock_expire_time.ToSeconds() == int(totpd.clock.now) + 60


async def test_retry_delay_counts_down_and_checks_while_locked_are_not_counted(
    totpd: Totpd,
) -> None:
    enrolled = await enroll_and_fail(totpd, 5)
    totpd.clock.advance(45)

    error = await rpc_error(verify(totpd, "alice", wrong_code(enrolled, totpd.clock.now)))

    assert (error.code, error.reason) == LOCKED
    assert error.retry_delay == 15
    assert (await get(totpd, "alice")).lockout.consecutive_failures == 5


async def test_lock_lifts_after_its_delay_and_success_resets_the_count(totpd: Totpd) -> None:
    enrolled = await enroll_and_fail(totpd, 5)
    totpd.clock.advance(61)

    assert (await verify_at(totpd, enrolled, totpd.clock.now)).totp_id == enrolled.totp_id

    lockout = (await get(totpd, "alice")).lockout
    assert lockout.consecutive_failures == 0
    assert not lockout.locked
    assert not lockout.HasField("lock_expire_time")
    # Counting starts over: four new failures do not lock again.
    for _ in range(4):
        await fail_verify(totpd, enrolled)
    totpd.clock.advance(STEP)
    assert (await verify_at(totpd, enrolled, totpd.clock.now)).totp_id == enrolled.totp_id


async def test_next_failure_after_the_lock_doubles_it(totpd: Totpd) -> None:
    enrolled = await enroll_and_fail(totpd, 5)
    totpd.clock.advance(61)

    sixth = await fail_verify(totpd, enrolled)
    error = await rpc_error(verify_at(totpd, enrolled, totpd.clock.now))

    assert (sixth.code, sixth.reason) == INVALID_CODE
    assert (error.code, error.reason) == LOCKED
    assert error.retry_delay == 120
    assert (await get(totpd, "alice")).lockout.consecutive_failures == 6


async def test_waiting_alone_does_not_reset_the_count(totpd: Totpd) -> None:
    enrolled = await enroll_and_fail(totpd, 5)
    totpd.clock.advance(24 * 3600)

    lockout = (await get(totpd, "alice")).lockout
    assert lockout.consecutive_failures == 5
    assert not lockout.locked

    await fail_verify(totpd, enrolled)
    error = await rpc_error(verify_at(totpd, enrolled, totpd.clock.now))
    assert error.retry_delay == 120


async def test_lock_doubles_up_to_a_cap_of_an_hour(totpd: Totpd) -> None:
    enrolled = await enroll_and_fail(totpd, 5)
    delays = []
    for _ in range(8):  # failures 5 .. 12
        error = await rpc_error(verify_at(totpd, enrolled, totpd.clock.now))
        assert (error.code, error.reason) == LOCKED
        delays.append(error.retry_delay)
        totpd.clock.advance(3601)
        await fail_verify(totpd, enrolled)

    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600]


async def test_concurrent_wrong_guesses_all_count(start_totpd: StartTotpd) -> None:
    totpd = await start_totpd(Policy(lockout=LockoutPolicy(threshold=100, permanent_after=100)))
    enrolled = await enroll(totpd, "alice")
    code = wrong_code(enrolled, totpd.clock.now)

    results = await outcomes(verify(totpd, "alice", code) for _ in range(20))

    assert results == ["INVALID_CODE"] * 20
    assert (await get(totpd, "alice")).lockout.consecutive_failures == 20


async def test_concurrent_wrong_guesses_evaluate_no_more_than_the_threshold(
    totpd: Totpd,
) -> None:
    enrolled = await enroll(totpd, "alice")
    code = wrong_code(enrolled, totpd.clock.now)

    results = await outcomes(verify(totpd, "alice", code) for _ in range(20))

    assert results.count("INVALID_CODE") == 5
    assert results.count("TOO_MANY_ATTEMPTS") == 15
    assert (await get(totpd, "alice")).lockout.consecutive_failures == 5


async def test_concurrent_guesses_through_two_servers_share_one_lockout(
    start_totpd: StartTotpd,
) -> None:
    first, second = await start_totpd(), await start_totpd()
    enrolled = await enroll(first, "alice")
    code = wrong_code(enrolled, first.clock.now)

    results = await outcomes(verify(s, "alice", code) for _ in range(10) for s in (first, second))

    assert results.count("INVALID_CODE") == 5
    assert results.count("TOO_MANY_ATTEMPTS") == 15


async def locked_for_good(totpd: Totpd, enrolled: pb.CreateTotpResponse) -> None:
    """Checks of the user are refused without RetryInfo, now and much later."""
    for _ in range(2):
        error = await rpc_error(verify_at(totpd, enrolled, totpd.clock.now))
        assert (error.code, error.reason) == LOCKED
        assert error.retry_delay is None
        totpd.clock.advance(30 * 24 * 3600)
    lockout = (await get(totpd, "alice")).lockout
    assert lockout.locked
    assert lockout.permanent
    assert not lockout.HasField("lock_expire_time")


async def test_permanent_lock_with_a_short_policy(start_totpd: StartTotpd) -> None:
    totpd = await start_totpd(Policy(lockout=LockoutPolicy(permanent_after=7)))
    enrolled = await enroll_and_fail(totpd, 5)
    totpd.clock.advance(61)
    await fail_verify(totpd, enrolled)  # the 6th: locked for 120 s
    totpd.clock.advance(121)
    seventh = await fail_verify(totpd, enrolled)

    assert (seventh.code, seventh.reason) == INVALID_CODE
    assert (await get(totpd, "alice")).lockout.consecutive_failures == 7
    await locked_for_good(totpd, enrolled)
    error = await rpc_error(use_recovery_code(totpd, "alice", enrolled.recovery_codes[0]))
    assert (error.code, error.reason) == LOCKED
    assert error.retry_delay is None


async def test_permanent_lock_at_the_default_100th_failure(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    for failure in range(1, 100):
        error = await fail_verify(totpd, enrolled)
        assert (error.code, error.reason) == INVALID_CODE, failure
        totpd.clock.advance(3601)  # past any lock (at most an hour)

    lockout = (await get(totpd, "alice")).lockout
    assert lockout.consecutive_failures == 99
    assert not lockout.permanent
    assert not lockout.locked

    hundredth = await fail_verify(totpd, enrolled)

    assert (hundredth.code, hundredth.reason) == INVALID_CODE
    assert (await get(totpd, "alice")).lockout.consecutive_failures == 100
    await locked_for_good(totpd, enrolled)


async def test_delete_and_reenroll_clears_a_permanent_lock(start_totpd: StartTotpd) -> None:
    totpd = await start_totpd(Policy(lockout=LockoutPolicy(threshold=2, permanent_after=2)))
    old = await enroll_and_fail(totpd, 2)
    await locked_for_good(totpd, old)

    await totpd.stub.DeleteTotp(pb.DeleteTotpRequest(user_id="alice"))
    cleared = (await get(totpd, "alice")).lockout
    new = await enroll(totpd, "alice")
    totpd.clock.advance(STEP)

    assert cleared.consecutive_failures == 0
    assert not cleared.locked
    assert not cleared.permanent
    assert (await verify_at(totpd, new, totpd.clock.now)).totp_id == new.totp_id


async def test_replacing_the_factor_clears_a_permanent_lock(start_totpd: StartTotpd) -> None:
    totpd = await start_totpd(Policy(lockout=LockoutPolicy(threshold=2, permanent_after=2)))
    old = await enroll_and_fail(totpd, 2)
    await locked_for_good(totpd, old)

    replacement = await create(totpd, "alice")
    replaced = await activate(totpd, replacement)
    totpd.clock.advance(STEP)

    assert replaced.replaced_totp_id == old.totp_id
    assert not (await get(totpd, "alice")).lockout.permanent
    assert (await verify_at(totpd, replacement, totpd.clock.now)).totp_id == replacement.totp_id


async def test_lock_survives_a_server_restart(
    start_totpd: StartTotpd, redis_server: EmbeddedRedis, keyring: Keyring, clock: FakeClock
) -> None:
    client = connect(redis_server.url)
    try:
        async with own_server(client, keyring, clock) as first:
            enrolled = await enroll(first, "alice")
            clock.advance(STEP)
            for _ in range(5):
                await fail_verify(first, enrolled)
    finally:
        await client.aclose()

    restarted = await start_totpd()
    error = await rpc_error(verify_at(restarted, enrolled, clock.now))

    assert (error.code, error.reason) == LOCKED
    assert error.retry_delay == 60
    assert (await get(restarted, "alice")).lockout.consecutive_failures == 5


async def test_recovery_code_failures_count_toward_the_same_lock(totpd: Totpd) -> None:
    enrolled = await enroll_and_fail(totpd, 3)
    for garbage in ("aaaa-bbbb-cccc", "not-a-code"):
        error = await rpc_error(use_recovery_code(totpd, "alice", garbage))
        assert (error.code, error.reason) == INVALID_CODE

    totp_error = await rpc_error(verify_at(totpd, enrolled, totpd.clock.now))
    recovery_error = await rpc_error(use_recovery_code(totpd, "alice", enrolled.recovery_codes[0]))

    assert (totp_error.code, totp_error.reason) == LOCKED
    assert totp_error.retry_delay == 60
    assert (recovery_error.code, recovery_error.reason) == LOCKED
    assert recovery_error.retry_delay == 60
    assert (await get(totpd, "alice")).lockout.consecutive_failures == 5
    # The refused recovery code was not used up, and a success resets the count.
    totpd.clock.advance(61)
    used = await use_recovery_code(totpd, "alice", enrolled.recovery_codes[0])
    assert used.recovery_codes_remaining == 9
    assert (await get(totpd, "alice")).lockout.consecutive_failures == 0


async def test_lockout_is_per_user(totpd: Totpd) -> None:
    await enroll_and_fail(totpd, 5, user_id="alice")
    bob = await enroll(totpd, "bob")
    totpd.clock.advance(STEP)

    assert (await verify_at(totpd, bob, totpd.clock.now)).totp_id == bob.totp_id
    assert not (await get(totpd, "bob")).lockout.locked
