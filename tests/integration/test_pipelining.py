"""Auto-pipelining (totpd.store.pipelining) against a real redis-server: concurrent commands
share one connection and batch, yet each caller gets its own reply or error, a lost
connection fails what was sent without resending it, and a cancelled caller leaves the
connection in step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from tests.faults.harness import wait_until
from totpd.embedded_redis import EmbeddedRedis
from totpd.store import pipelining
from totpd.store.pipelining import PipeliningRedis
from totpd.store.redis_store import connect

# Counts its calls: a script that ran twice shows up as 2.
INCR = "return redis.call('INCR', KEYS[1])"


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    # Its own server: these tests pause and kill clients.
    with EmbeddedRedis(tmp_path_factory.mktemp("pipelining"), appendonly=False) as server:
        yield server


@pytest.fixture
def admin(own_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_redis.url)
    client.flushall()
    try:
        yield client
    finally:
        client.execute_command("CLIENT", "UNPAUSE")
        client.close()


@pytest.fixture
async def client(own_redis: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    c = connect(own_redis.url, timeout=5)
    try:
        yield c
    finally:
        await c.aclose()


def _connections(admin: redis.Redis) -> int:
    """Connections other than the admin's own."""
    return len(admin.client_list()) - 1


def _batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of commands in each write."""
    sizes: list[int] = []
    flush = pipelining._Pipe._flush

    def counting(self: pipelining._Pipe) -> None:
        sizes.append(len(self._unsent))
        flush(self)

    monkeypatch.setattr(pipelining._Pipe, "_flush", counting)
    return sizes


async def _until_blocked_in_redis(admin: redis.Redis) -> None:
    async def blocked() -> bool:
        return int(admin.info("clients")["blocked_clients"]) >= 1

    await wait_until(blocked, 5, "the batch blocked in Redis")


def test_connect_gives_a_pipelining_client(client: aioredis.Redis) -> None:
    assert isinstance(client, PipeliningRedis)


async def test_concurrent_commands_share_a_connection_and_each_gets_its_own_reply(
    client: aioredis.Redis, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _batch_sizes(monkeypatch)
    admin.mset({f"k{i}": f"v{i}" for i in range(300)})
    for i in range(300):
        admin.hset(f"h{i}", mapping={"n": i})
    replies = await asyncio.gather(
        *(client.hget(f"h{i}", "n") for i in range(300)),
        *(client.hgetall(f"h{i}") for i in range(300)),
    )
    assert replies[:300] == [str(i).encode() for i in range(300)]
    assert replies[300:] == [{b"n": str(i).encode()} for i in range(300)]
    # 600 commands sent in the same turn of the loop: one write, on one connection.
    assert sizes == [600]
    assert _connections(admin) == 1


async def test_an_error_reply_fails_only_its_own_command(
    client: aioredis.Redis, admin: redis.Redis
) -> None:
    admin.set("a-string", "x")
    admin.hset("a-hash", "f", "1")
    results = await asyncio.gather(
        client.hget("a-hash", "f"),
        client.hget("a-string", "f"),  # WRONGTYPE
        client.hget("a-hash", "f"),
        return_exceptions=True,
    )
    assert results[0] == results[2] == b"1"
    assert isinstance(results[1], redis.ResponseError)
    assert "WRONGTYPE" in str(results[1])


async def test_a_flushed_script_is_loaded_again(client: aioredis.Redis, admin: redis.Redis) -> None:
    script = client.register_script(INCR)
    assert await script(keys=["counter"]) == 1
    admin.script_flush()
    # Several at once: each gets NOSCRIPT in the batch, reloads and runs exactly once.
    assert sorted(await asyncio.gather(*(script(keys=["counter"]) for _ in range(5)))) == [
        2,
        3,
        4,
        5,
        6,
    ]
    assert int(admin.get("counter") or 0) == 6


async def test_a_lost_connection_fails_what_was_sent_and_resends_nothing(
    client: aioredis.Redis, admin: redis.Redis
) -> None:
    script = client.register_script(INCR)
    assert await script(keys=["counter"]) == 1
    admin.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
    calls = [asyncio.create_task(script(keys=["counter"])) for _ in range(5)]

    await _until_blocked_in_redis(admin)
    admin.client_kill_filter(_type="normal", skipme=True)
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, redis.ConnectionError) for r in results), results
    admin.execute_command("CLIENT", "UNPAUSE")
    # None of the five ran (the killed client's queued commands are dropped, and nothing
    # was sent again); the client reconnects for the next one.
    assert int(admin.get("counter") or 0) == 1
    assert await script(keys=["counter"]) == 2


async def test_a_batch_past_the_socket_timeout_times_out_and_the_next_one_reconnects(
    own_redis: EmbeddedRedis, admin: redis.Redis
) -> None:
    c = connect(own_redis.url, timeout=0.3)
    try:
        script = c.register_script(INCR)
        assert await script(keys=["counter"]) == 1
        admin.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
        with pytest.raises(redis.TimeoutError):
            await script(keys=["counter"])
        admin.execute_command("CLIENT", "UNPAUSE")
        assert await c.hget("nothing", "f") is None
        # The timed-out script had been sent, so it may have run (here it did, when the
        # pause ended); it was not sent again.
        assert await script(keys=["counter"]) in (2, 3)
        assert int(admin.get("counter") or 0) <= 3
    finally:
        await c.aclose()


async def test_a_cancelled_caller_leaves_the_connection_in_step(
    client: aioredis.Redis, admin: redis.Redis
) -> None:
    script = client.register_script(INCR)
    await script(keys=["counter"])
    admin.set("plain", "value")
    admin.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
    first = asyncio.create_task(script(keys=["counter"]))
    behind = asyncio.create_task(client.hget("nothing", "f"))

    await _until_blocked_in_redis(admin)
    first.cancel()  # its reply is still coming: it must be read and dropped
    admin.execute_command("CLIENT", "UNPAUSE")
    assert await behind is None
    with pytest.raises(asyncio.CancelledError):
        await first
    # Every later reply still goes to its own caller.
    assert await client.get("plain") == b"value"
    assert await asyncio.gather(*(client.hget("nothing", str(i)) for i in range(3))) == [None] * 3
    assert int(admin.get("counter") or 0) == 2  # the cancelled call's script did run once


async def test_close_waits_for_the_batch_on_its_way(
    own_redis: EmbeddedRedis, admin: redis.Redis
) -> None:
    c = connect(own_redis.url, timeout=5)
    script = c.register_script(INCR)
    await script(keys=["counter"])
    admin.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
    call = asyncio.create_task(script(keys=["counter"]))

    await _until_blocked_in_redis(admin)
    closing = asyncio.create_task(c.aclose())
    await asyncio.sleep(0)  # let aclose start: it must wait for the reply, not cut it off
    assert not closing.done()
    admin.execute_command("CLIENT", "UNPAUSE")
    await closing
    assert await call == 2


def test_state_commands_are_not_pipelined() -> None:
    # They would act on a connection other callers share.
    for command in ("WAIT", "MULTI", "EXEC", "SELECT", "CLIENT", "SUBSCRIBE", "BLPOP", "XREAD"):
        assert command not in pipelining.BATCHED


async def test_under_concurrency_and_cancellations_every_reply_reaches_its_own_caller(
    client: aioredis.Redis, admin: redis.Redis
) -> None:
    # Thousands of calls of several commands in flight at once, a tenth of them cancelled
    # at random points: a reply handed to the wrong caller would show up as another key's
    # value (or the wrong type of reply).
    import random

    rng = random.Random(6)
    for i in range(500):
        admin.hset(f"h{i}", mapping={"n": i, "m": -i})
    script = client.register_script("return {KEYS[1], ARGV[1]}")

    async def call(i: int) -> None:
        key = f"h{i % 500}"
        kind = i % 3
        if kind == 0:
            assert await client.hget(key, "n") == str(i % 500).encode()
        elif kind == 1:
            assert await client.hmget(key, ["m", "n"]) == [
                str(-(i % 500)).encode(),
                str(i % 500).encode(),
            ]
        else:
            assert await script(keys=[key], args=[i]) == [key.encode(), str(i).encode()]

    async def maybe_cancelled(i: int) -> bool:
        task = asyncio.create_task(call(i))
        if rng.random() < 0.1:
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return False
        return True

    finished = await asyncio.gather(*(maybe_cancelled(i) for i in range(3000)))
    assert sum(finished) >= 2500
    assert _connections(admin) == 1


async def test_an_idle_connection_pings_itself_and_keeps_serving(
    own_redis: EmbeddedRedis, admin: redis.Redis
) -> None:
    # As redis-py pings a pooled connection idle for health_check_interval, the shared
    # connection pings itself when idle that long (a silently dead peer then costs a ping).
    c = PipeliningRedis.from_url(own_redis.url, socket_timeout=5, health_check_interval=0.2)
    try:
        assert await c.hget("nothing", "f") is None

        async def pinged() -> bool:
            return any(entry["cmd"] == "ping" for entry in admin.client_list())

        await wait_until(pinged, 5, "the idle connection sent a PING")
        assert await c.hget("nothing", "f") is None
        assert _connections(admin) == 1
    finally:
        await c.aclose()
