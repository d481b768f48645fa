"""Redis frozen (SIGSTOP): every call fails at its deadline instead of hanging, health
goes NOT_SERVING; thawed (SIGCONT): the server recovers by itself."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import grpc

from tests.faults.conftest import MakeRedis, OpenChannel, StartTotpd
from tests.faults.harness import INFRA, NOT_SERVING, SERVING, outcome, wait_for_health
from tests.helpers import totp_code
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

DEADLINE = 1.0
SLACK = 0.5  # scheduling and transport on a loaded machine; a hang would take much longer


def requests(user: str, totp_id: str) -> list[tuple[str, Any]]:
    """One call of every RPC (some twice), against an enrolled user."""
    return [
        ("CreateTotp", pb.CreateTotpRequest(user_id="frozen-new", qr_code_size=64)),
        ("ActivateTotp", pb.ActivateTotpRequest(user_id=user, totp_id=totp_id, code="123456")),
        ("VerifyTotp", pb.VerifyTotpRequest(user_id=user, code="123456")),
        ("VerifyTotp", pb.VerifyTotpRequest(user_id=user, code="654321")),
        ("UseRecoveryCode", pb.UseRecoveryCodeRequest(user_id=user, recovery_code="x" * 10)),
        ("RegenerateRecoveryCodes", pb.RegenerateRecoveryCodesRequest(user_id=user)),
        ("GetTotp", pb.GetTotpRequest(user_id=user)),
        ("GetTotp", pb.GetTotpRequest(user_id="nobody")),
        ("DeleteTotp", pb.DeleteTotpRequest(user_id="frozen-other")),
    ]


async def timed(stub: pb_grpc.TotpServiceStub, rpc: str, request: Any) -> tuple[str, Any, float]:
    started = time.monotonic()
    try:
        await getattr(stub, rpc)(request, timeout=DEADLINE)
        got: Any = ("OK", "")
    except grpc.aio.AioRpcError as error:
        got = outcome(error)
    return rpc, got, time.monotonic() - started


async def test_frozen_redis_fails_calls_at_their_deadline_then_recovers(
    make_redis: MakeRedis, start_totpd: StartTotpd, open_channel: OpenChannel
) -> None:
    redis_server = make_redis()
    server = start_totpd(redis_server.url)  # Redis socket timeout: the default, 1 s
    channel = open_channel(server.address)
    stub = pb_grpc.TotpServiceStub(channel)
    await wait_for_health(channel, SERVING, timeout=5)
    created = await stub.CreateTotp(pb.CreateTotpRequest(user_id="frozen"), timeout=5)
    await stub.ActivateTotp(
        pb.ActivateTotpRequest(
            user_id="frozen", totp_id=created.totp_id, code=totp_code(created.secret, time.time())
        ),
        timeout=5,
    )

    redis_server.signal(signal.SIGSTOP)
    try:
        waves = []
        # First wave: on the pool's open connections; second: once health has noticed,
        # with connections still stuck on the first wave's unanswered commands.
        for wave in range(2):
            calls = [timed(stub, rpc, r) for rpc, r in requests("frozen", created.totp_id)]
            waves += await asyncio.gather(*calls)
            if wave == 0:
                await wait_for_health(channel, NOT_SERVING, timeout=5)
    finally:
        redis_server.signal(signal.SIGCONT)

    slow = [(rpc, round(took, 3)) for rpc, _, took in waves if took > DEADLINE + SLACK]
    assert not slow, f"calls outlived their {DEADLINE}s deadline: {slow}"
    wrong = [(rpc, got) for rpc, got, _ in waves if got not in INFRA]
    assert not wrong, wrong

    await wait_for_health(channel, SERVING, timeout=10)
    status = await stub.GetTotp(pb.GetTotpRequest(user_id="frozen"), timeout=DEADLINE)
    assert status.active_totp.totp_id == created.totp_id
    verified = await stub.VerifyTotp(
        pb.VerifyTotpRequest(user_id="frozen", code=totp_code(created.secret, time.time() + 30)),
        timeout=DEADLINE,
    )
    assert verified.totp_id == created.totp_id
    again = await stub.CreateTotp(pb.CreateTotpRequest(user_id="thawed"), timeout=DEADLINE)
    assert again.totp_id
