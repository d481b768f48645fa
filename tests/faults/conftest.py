"""Fixtures of the fault suite: redis-server children and ``python -m totpd`` processes
pointed at them, each stopped in ``finally`` whatever the test did to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import grpc
import pytest

from tests.faults.harness import RedisChild
from tests.live_server import TotpdProcess

MakeRedis = Callable[..., RedisChild]
StartTotpd = Callable[..., TotpdProcess]
OpenChannel = Callable[[str], grpc.aio.Channel]


@pytest.fixture
def make_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRedis]:
    """Start redis-server children (short paths: Unix socket names are limited)."""
    started: list[RedisChild] = []

    def make(appendfsync: str = "everysec") -> RedisChild:
        server = RedisChild(tmp_path_factory.mktemp("r"), appendfsync=appendfsync)
        started.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def start_totpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartTotpd]:
    """Start ``python -m totpd`` processes against a given Redis. They share one keys file,
    so any of them can open what another stored. Teardown stops each (SIGTERM, then
    SIGKILL) and fails the test if one logged an ERROR (an unexpected exception)."""
    keys_file = tmp_path_factory.mktemp("keys") / "keys.json"
    started: list[TotpdProcess] = []

    def start(redis_url: str, **settings: str) -> TotpdProcess:
        # No metrics endpoint unless asked: its fixed default port fits one server only.
        settings = {"METRICS_LISTEN": "", **settings}
        server = TotpdProcess(
            tmp_path_factory.mktemp("totpd"),
            REDIS_URL=redis_url,
            KEYS_FILE=str(keys_file),
            **settings,
        )
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
    errors = [line for server in started for line in server.lines if '"level": "ERROR"' in line]
    assert not errors, "totpd logged errors:\n" + "\n".join(errors)


@pytest.fixture
async def open_channel() -> AsyncIterator[OpenChannel]:
    """Insecure channels to loopback servers, closed at teardown."""
    channels: list[grpc.aio.Channel] = []

    def open_(address: str) -> grpc.aio.Channel:
        channels.append(grpc.aio.insecure_channel(address))
        return channels[-1]

    try:
        yield open_
    finally:
        for channel in channels:
            await channel.close()
