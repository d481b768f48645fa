"""UseRecoveryCode and RegenerateRecoveryCodes: one-time codes of the active TOTP."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import Totpd
from tests.integration.flows import (
    INVALID_CODE,
    TOTP_NOT_FOUND,
    activate,
    create,
    enroll,
    get,
    outcomes,
    rpc_error,
    use_recovery_code,
)
from totpd.v1 import totp_service_pb2 as pb


async def regenerate(totpd: Totpd, user_id: str) -> pb.RegenerateRecoveryCodesResponse:
    return await totpd.stub.RegenerateRecoveryCodes(
        pb.RegenerateRecoveryCodesRequest(user_id=user_id)
    )


async def test_each_code_works_exactly_once(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    assert len(enrolled.recovery_codes) == 10
    assert (await get(totpd, "alice")).recovery_codes_remaining == 10

    remaining = []
    for code in enrolled.recovery_codes:
        used = await use_recovery_code(totpd, "alice", code)
        assert used.totp_id == enrolled.totp_id
        remaining.append(used.recovery_codes_remaining)

    assert remaining == list(range(9, -1, -1))
    assert (await get(totpd, "alice")).recovery_codes_remaining == 0
    for code in enrolled.recovery_codes:
        error = await rpc_error(use_recovery_code(totpd, "alice", code))
        assert (error.code, error.reason) == INVALID_CODE
        totpd.clock.advance(3601)  # past the lock these failures bring on


async def test_reused_code_is_invalid(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    code = enrolled.recovery_codes[3]
    await use_recovery_code(totpd, "alice", code)

    error = await rpc_error(use_recovery_code(totpd, "alice", code))

    assert (error.code, error.reason) == INVALID_CODE
    assert (await get(totpd, "alice")).recovery_codes_remaining == 9


@pytest.mark.parametrize(
    "spell",
    [
        pytest.param(str.upper, id="upper-case"),
        pytest.param(lambda c: c.replace("-", ""), id="no-dashes"),
        pytest.param(lambda c: c.replace("-", " "), id="spaces"),
        pytest.param(lambda c: f"  {c.upper().replace('-', ' - ')}\t", id="mixed"),
    ],
)
async def test_case_dashes_and_spaces_do_not_matter(
    totpd: Totpd, spell: Callable[[str], str]
) -> None:
    enrolled = await enroll(totpd, "alice")
    code = enrolled.recovery_codes[0]

    used = await use_recovery_code(totpd, "alice", spell(code))

    assert used.recovery_codes_remaining == 9
    # It was that code that got used up, in whatever spelling.
    error = await rpc_error(use_recovery_code(totpd, "alice", code))
    assert (error.code, error.reason) == INVALID_CODE


@pytest.mark.parametrize("garbage", ["not-a-code", "🙂", "aaaa-bbbb-cccc", "x" * 64])
async def test_garbage_is_invalid_and_counts_as_a_failure(totpd: Totpd, garbage: str) -> None:
    await enroll(totpd, "alice")

    error = await rpc_error(use_recovery_code(totpd, "alice", garbage))

    assert (error.code, error.reason) == INVALID_CODE
    state = await get(totpd, "alice")
    assert state.lockout.consecutive_failures == 1
    assert state.recovery_codes_remaining == 10


async def test_twenty_concurrent_uses_of_one_code_accept_exactly_one(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    code = enrolled.recovery_codes[0]

    results = await outcomes(use_recovery_code(totpd, "alice", code) for _ in range(20))

    assert results.count("OK") == 1
    assert set(results) - {"OK"} <= {"INVALID_CODE", "TOO_MANY_ATTEMPTS"}
    assert (await get(totpd, "alice")).recovery_codes_remaining == 9


async def test_codes_of_a_pending_enrollment_do_not_work(totpd: Totpd) -> None:
    created = await create(totpd, "alice")

    error = await rpc_error(use_recovery_code(totpd, "alice", created.recovery_codes[0]))

    assert (error.code, error.reason) == TOTP_NOT_FOUND


async def test_codes_of_a_pending_replacement_work_only_once_it_is_activated(
    totpd: Totpd,
) -> None:
    old = await enroll(totpd, "alice")
    new = await create(totpd, "alice")

    error = await rpc_error(use_recovery_code(totpd, "alice", new.recovery_codes[0]))
    assert (error.code, error.reason) == INVALID_CODE
    assert (await use_recovery_code(totpd, "alice", old.recovery_codes[0])).totp_id == old.totp_id

    await activate(totpd, new)

    error = await rpc_error(use_recovery_code(totpd, "alice", old.recovery_codes[1]))
    assert (error.code, error.reason) == INVALID_CODE
    used = await use_recovery_code(totpd, "alice", new.recovery_codes[0])
    assert used.totp_id == new.totp_id
    assert used.recovery_codes_remaining == 9


async def test_codes_are_per_user(totpd: Totpd) -> None:
    alice = await enroll(totpd, "alice")
    await enroll(totpd, "bob")

    error = await rpc_error(use_recovery_code(totpd, "bob", alice.recovery_codes[0]))

    assert (error.code, error.reason) == INVALID_CODE
    assert (await get(totpd, "alice")).recovery_codes_remaining == 10


async def test_regenerate_replaces_every_code_at_once(totpd: Totpd) -> None:
    enrolled = await enroll(totpd, "alice")
    await use_recovery_code(totpd, "alice", enrolled.recovery_codes[0])
    await use_recovery_code(totpd, "alice", enrolled.recovery_codes[1])

    regenerated = await regenerate(totpd, "alice")

    assert regenerated.totp_id == enrolled.totp_id
    assert len(regenerated.recovery_codes) == 10
    assert len(set(regenerated.recovery_codes)) == 10
    assert not set(regenerated.recovery_codes) & set(enrolled.recovery_codes)
    assert (await get(totpd, "alice")).recovery_codes_remaining == 10
    # An old, never used code stops working at once...
    error = await rpc_error(use_recovery_code(totpd, "alice", enrolled.recovery_codes[2]))
    assert (error.code, error.reason) == INVALID_CODE
    # ... and every new one works, once.
    for left, code in zip(range(9, -1, -1), regenerated.recovery_codes, strict=True):
        assert (await use_recovery_code(totpd, "alice", code)).recovery_codes_remaining == left


async def test_regenerate_without_an_active_totp_is_not_found(totpd: Totpd) -> None:
    await create(totpd, "pending-only")

    for user_id in ("nobody", "pending-only"):
        error = await rpc_error(regenerate(totpd, user_id))
        assert (error.code, error.reason) == TOTP_NOT_FOUND


async def test_regenerate_after_delete_is_not_found(totpd: Totpd) -> None:
    await enroll(totpd, "alice")
    await totpd.stub.DeleteTotp(pb.DeleteTotpRequest(user_id="alice"))

    error = await rpc_error(regenerate(totpd, "alice"))

    assert (error.code, error.reason) == TOTP_NOT_FOUND
