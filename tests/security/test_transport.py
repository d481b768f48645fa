"""Transport limits: oversized messages, the server options, and request deadlines that
bound the Redis calls a request makes."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import pytest

from tests.helpers import error_details
from totpd.api.server import TransportLimits
from totpd.embedded_redis import EmbeddedRedis
from totpd.model import ActiveRecord
from totpd.store.redis_store import RedisStore, connect
from totpd.v1 import totp_service_pb2 as pb

from .conftest import StartServer, redis_snapshot


async def test_an_oversized_message_is_resource_exhausted(start_server: StartServer) -> None:
    running = await start_server()
    before = await redis_snapshot(running.redis)
    request = pb.CreateTotpRequest(user_id="u" * (TransportLimits().max_receive_bytes + 1))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.stub().CreateTotp(request, timeout=5)
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await redis_snapshot(running.redis) == before
    # Just under the limit is read (and refused by validation, not by the transport).
    request = pb.CreateTotpRequest(user_id="u" * 4096)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.stub().CreateTotp(request, timeout=5)
    assert error_details(raised.value).field_violations.keys() == {"user_id"}


async def test_oversized_metadata_is_refused(start_server: StartServer) -> None:
    running = await start_server()
    metadata = (("x-padding", "p" * (TransportLimits().max_metadata_bytes * 2)),)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.stub().GetTotp(pb.GetTotpRequest(user_id="a"), metadata=metadata, timeout=5)
    assert raised.value.code() in (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,  # some gRPC versions close the stream instead
        grpc.StatusCode.UNAVAILABLE,
    )


def test_server_options_bound_connections() -> None:
    options = dict(TransportLimits().options())
    assert options["grpc.max_receive_message_length"] == 8 * 1024
    assert options["grpc.max_concurrent_streams"] > 0
    assert options["grpc.max_connection_age_ms"] > 0
    assert options["grpc.max_connection_idle_ms"] > 0
    assert options["grpc.http2.max_ping_strikes"] > 0
    assert options["grpc.keepalive_permit_without_calls"] == 0


class _SpyStore(RedisStore):
    """Records how and when a request's first Redis read ended."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.ended = asyncio.Event()
        self.ended_at = 0.0
        self.outcome: type[BaseException] | None = None

    async def get_active(self, user_id: str) -> ActiveRecord | None:
        try:
            return await super().get_active(user_id)
        except BaseException as exc:
            self.outcome = type(exc)
            raise
        finally:
            self.ended_at = time.monotonic()
            self.ended.set()


async def test_a_request_ends_at_its_deadline_when_redis_hangs(
    start_server: StartServer, redis_server: EmbeddedRedis
) -> None:
    # Redis's own timeout is far longer than the deadline: only the deadline can end it.
    client = connect(redis_server.url, timeout=30)
    store = _SpyStore(client, prefix="totpd")
    running = await start_server(store=store)
    stub = running.stub()
    await stub.GetTotp(pb.GetTotpRequest(user_id="warm-up"), timeout=5)  # connect first
    pid = redis_server._process.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.VerifyTotp(pb.VerifyTotpRequest(user_id="alice", code="123456"), timeout=0.5)
        assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.wait_for(store.ended.wait(), 2)
        assert store.outcome is asyncio.CancelledError
        assert store.ended_at - started < 0.5 + 0.4
    finally:
        os.kill(pid, signal.SIGCONT)
        await client.aclose()
