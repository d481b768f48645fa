"""Two totpd processes on different ports against one Redis: replay protection and attempt
limits hold for concurrent calls spread over both (each decision is one Lua script)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import grpc

from tests.faults.conftest import MakeRedis, OpenChannel, StartTotpd
from tests.faults.harness import SERVING, enroll, outcome, wait_for_health
from tests.faults.load import wrong_code
from tests.helpers import totp_code
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

CONCURRENT = 24
THRESHOLD = 5  # TOTPD_LOCKOUT_THRESHOLD and TOTPD_ACTIVATION_MAX_ATTEMPTS
OK = ("OK", "")
INVALID_CODE = ("INVALID_ARGUMENT", "INVALID_CODE")
TOO_MANY = ("RESOURCE_EXHAUSTED", "TOO_MANY_ATTEMPTS")
NOT_FOUND = ("NOT_FOUND", "TOTP_NOT_FOUND")


async def answer(stub: pb_grpc.TotpServiceStub, rpc: str, request: Any) -> tuple[str, str]:
    try:
        await getattr(stub, rpc)(request, timeout=5)
    except grpc.aio.AioRpcError as error:
        return outcome(error)
    return OK


async def spread(stubs: list[pb_grpc.TotpServiceStub], rpc: str, request: Any) -> Counter:
    """The same call CONCURRENT times at once, round robin over the servers."""
    calls = [answer(stubs[i % len(stubs)], rpc, request) for i in range(CONCURRENT)]
    return Counter(await asyncio.gather(*calls))


async def test_two_servers_share_replay_protection_and_attempt_limits(
    make_redis: MakeRedis, start_totpd: StartTotpd, open_channel: OpenChannel
) -> None:
    redis_server = make_redis()
    settings = {"LOCKOUT_THRESHOLD": str(THRESHOLD), "ACTIVATION_MAX_ATTEMPTS": str(THRESHOLD)}
    servers = [start_totpd(redis_server.url, **settings) for _ in range(2)]
    assert servers[0].address != servers[1].address
    channels = [open_channel(server.address) for server in servers]
    for channel in channels:
        await wait_for_health(channel, SERVING, timeout=5)
    stubs = [pb_grpc.TotpServiceStub(channel) for channel in channels]

    # Replay: of identical calls over both servers, exactly one is accepted; each replay
    # counts as a failed attempt, so the lock engages after THRESHOLD of them.
    replayed = {OK: 1, INVALID_CODE: THRESHOLD, TOO_MANY: CONCURRENT - 1 - THRESHOLD}
    for n in range(2):
        user = f"replay-{n}"
        created = await enroll(stubs[n % 2], user)
        code = totp_code(created.secret, time.time() + 30)
        request = pb.VerifyTotpRequest(user_id=user, code=code)
        assert await spread(stubs, "VerifyTotp", request) == replayed
        user = f"recovery-{n}"
        created = await enroll(stubs[n % 2], user)
        recovery = pb.UseRecoveryCodeRequest(user_id=user, recovery_code=created.recovery_codes[0])
        assert await spread(stubs, "UseRecoveryCode", recovery) == replayed

    # Lockout: wrong codes over both servers; the lock engages at exactly the threshold.
    created = await enroll(stubs[0], "guessed")
    wrong = pb.VerifyTotpRequest(user_id="guessed", code=wrong_code(created.secret, time.time()))
    assert await spread(stubs, "VerifyTotp", wrong) == {
        INVALID_CODE: THRESHOLD,
        TOO_MANY: CONCURRENT - THRESHOLD,
    }
    for stub in stubs:
        status = await stub.GetTotp(pb.GetTotpRequest(user_id="guessed"), timeout=5)
        assert status.lockout.locked
        assert status.lockout.consecutive_failures == THRESHOLD
    right = pb.VerifyTotpRequest(
        user_id="guessed", code=totp_code(created.secret, time.time() + 30)
    )
    for stub in stubs:
        assert await answer(stub, "VerifyTotp", right) == TOO_MANY

    # Activation attempts: the enrollment is discarded at exactly the limit.
    pending = await stubs[1].CreateTotp(pb.CreateTotpRequest(user_id="activating"), timeout=5)
    bad = pb.ActivateTotpRequest(
        user_id="activating",
        totp_id=pending.totp_id,
        code=wrong_code(pending.secret, time.time()),
    )
    assert await spread(stubs, "ActivateTotp", bad) == {
        INVALID_CODE: THRESHOLD - 1,
        TOO_MANY: 1,
        NOT_FOUND: CONCURRENT - THRESHOLD,
    }
    status = await stubs[0].GetTotp(pb.GetTotpRequest(user_id="activating"), timeout=5)
    assert not status.pending_totps and not status.HasField("active_totp")
