"""When Redis goes away: UNAVAILABLE with STORE_UNAVAILABLE, health NOT_SERVING, and
recovery by itself when Redis is back (with its data, thanks to the AOF)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.conftest import FakeClock
from tests.helpers import error_details, totp_code
from totpd.api.server import create_server, health_tracking
from totpd.embedded_redis import EmbeddedRedis
from totpd.keyring import Keyring
from totpd.service import TotpService
from totpd.store.redis_store import RedisStore, connect
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CALL = 5.0  # every call has a deadline: a stalled one fails the test instead of hanging


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    redis_server = EmbeddedRedis(tmp_path / "r")
    redis_server.start()
    yield redis_server
    redis_server.stop()


async def wait_for_health(channel: grpc.aio.Channel, wanted: int) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 10
    while True:
        reply = await stub.Check(
            health_pb2.HealthCheckRequest(service="totpd.v1.TotpService"), timeout=2
        )
        if reply.status == wanted:
            return
        assert time.monotonic() < deadline, f"health stayed {reply.status}"
        await asyncio.sleep(0.01)


async def test_redis_down_means_unavailable_and_not_serving_then_recovery(
    own_redis: EmbeddedRedis,
) -> None:
    clock = FakeClock()
    store = RedisStore(connect(own_redis.url, timeout=0.5))
    service = TotpService(store, Keyring.generate(), clock=clock)
    health_servicer = health.aio.HealthServicer()
    server, port = create_server(service, "127.0.0.1:0", health_servicer=health_servicer)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.TotpServiceStub(channel)
    try:
        async with health_tracking(health_servicer, store.ping, interval=0.02):
            await wait_for_health(channel, SERVING)
            created = await stub.CreateTotp(pb.CreateTotpRequest(user_id="alice"), timeout=CALL)
            await stub.ActivateTotp(
                pb.ActivateTotpRequest(
                    user_id="alice",
                    totp_id=created.totp_id,
                    code=totp_code(created.secret, clock.now),
                ),
                timeout=CALL,
            )

            own_redis.stop()
            await wait_for_health(channel, NOT_SERVING)
            calls = [
                stub.CreateTotp(pb.CreateTotpRequest(user_id="bob"), timeout=CALL),
                stub.VerifyTotp(pb.VerifyTotpRequest(user_id="alice", code="123456"), timeout=CALL),
                stub.GetTotp(pb.GetTotpRequest(user_id="alice"), timeout=CALL),
                stub.DeleteTotp(pb.DeleteTotpRequest(user_id="alice"), timeout=CALL),
            ]
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                details = error_details(caught.value)
                assert details.code == grpc.StatusCode.UNAVAILABLE
                assert (details.reason, details.domain) == ("STORE_UNAVAILABLE", "totpd")

            own_redis.start()  # same directory: the AOF brings the data back
            await wait_for_health(channel, SERVING)
            clock.advance(30)
            verified = await stub.VerifyTotp(
                pb.VerifyTotpRequest(user_id="alice", code=totp_code(created.secret, clock.now)),
                timeout=CALL,
            )
            assert verified.totp_id == created.totp_id
    finally:
        await channel.close()
        await server.stop(None)
        await store.close()
