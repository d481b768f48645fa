"""Fixtures shared by the suites: a real redis-server for the session, and a real totpd
gRPC server on an ephemeral port with the generated stub as its client.

The server runs in the test's event loop with an injected clock, so tests move time by
setting it instead of sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from totpd.api.server import create_server
from totpd.embedded_redis import EmbeddedRedis
from totpd.keyring import Keyring
from totpd.service import Policy, TotpService
from totpd.store.redis_store import RedisStore, connect
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

# A fixed instant well inside a 30 s and a 60 s step (1_800_000_010 % 60 == 10), so
# codes for t-30 s and t+30 s are in distinct, predictable steps.
T0 = 1_800_000_010.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False) as server:
        yield server


@pytest.fixture
async def redis_client(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = connect(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


@dataclass
class Totpd:
    """A running server and everything a test may want to poke at."""

    stub: pb_grpc.TotpServiceStub
    channel: grpc.aio.Channel
    address: str
    redis: aioredis.Redis
    store: RedisStore
    service: TotpService
    clock: FakeClock
    keyring: Keyring


StartTotpd = Callable[..., Awaitable[Totpd]]


@pytest.fixture
async def start_totpd(
    redis_client: aioredis.Redis, clock: FakeClock, keyring: Keyring
) -> AsyncIterator[StartTotpd]:
    """Start servers (any number, sharing Redis, clock and keys) with a given Policy."""
    started: list[tuple[grpc.aio.Server, grpc.aio.Channel]] = []

    async def start(policy: Policy | None = None) -> Totpd:
        store = RedisStore(redis_client, prefix="totpd")
        service = TotpService(store, keyring, policy or Policy(), clock=clock)
        server, port = create_server(service, "127.0.0.1:0")
        await server.start()
        address = f"127.0.0.1:{port}"
        channel = grpc.aio.insecure_channel(address)
        started.append((server, channel))
        return Totpd(
            pb_grpc.TotpServiceStub(channel),
            channel,
            address,
            redis_client,
            store,
            service,
            clock,
            keyring,
        )

    yield start
    for server, channel in started:
        await channel.close()
        await server.stop(None)


@pytest.fixture
async def totpd(start_totpd: StartTotpd) -> Totpd:
    return await start_totpd()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
