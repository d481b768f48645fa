"""Redis at maxmemory with noeviction: writes fail as UNAVAILABLE (STORE_UNAVAILABLE),
reads still work, and Redis evicts nothing."""

from __future__ import annotations

import time

import grpc

from tests.faults.conftest import MakeRedis, OpenChannel, StartTotpd
from tests.faults.harness import SERVING, outcome, wait_for_health
from tests.helpers import totp_code
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

ATTEMPTS = 60
STORE_UNAVAILABLE = ("UNAVAILABLE", "STORE_UNAVAILABLE")


async def test_full_redis_refuses_writes_serves_reads_and_evicts_nothing(
    make_redis: MakeRedis, start_totpd: StartTotpd, open_channel: OpenChannel
) -> None:
    redis_server = make_redis()
    server = start_totpd(redis_server.url)
    channel = open_channel(server.address)
    stub = pb_grpc.TotpServiceStub(channel)
    await wait_for_health(channel, SERVING, timeout=5)
    enrolled = {}
    for n in range(5):
        user = f"full-{n}"
        created = await stub.CreateTotp(pb.CreateTotpRequest(user_id=user), timeout=5)
        await stub.ActivateTotp(
            pb.ActivateTotpRequest(
                user_id=user, totp_id=created.totp_id, code=totp_code(created.secret, time.time())
            ),
            timeout=5,
        )
        enrolled[user] = created.totp_id

    admin = redis_server.client()
    try:
        keys_before = set(admin.keys("*"))
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", str(used + 1024))

        answers = []
        for n in range(ATTEMPTS):
            request = pb.CreateTotpRequest(user_id=f"new-{n}", qr_code_size=64)
            try:
                await stub.CreateTotp(request, timeout=5)
                answers.append(("OK", ""))
            except grpc.aio.AioRpcError as error:
                answers.append(outcome(error))
        assert STORE_UNAVAILABLE in answers, f"no write refused in {ATTEMPTS} tries: {answers}"
        # Writes are refused, never failed otherwise; a few may still fit, as Redis's
        # used_memory moves with its buffers.
        assert set(answers) <= {("OK", ""), STORE_UNAVAILABLE}, answers

        for user, totp_id in enrolled.items():
            status = await stub.GetTotp(pb.GetTotpRequest(user_id=user), timeout=5)
            assert status.active_totp.totp_id == totp_id

        assert int(admin.info("stats")["evicted_keys"]) == 0
        keys_after = set(admin.keys("*"))
        assert keys_before <= keys_after, keys_before - keys_after
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
