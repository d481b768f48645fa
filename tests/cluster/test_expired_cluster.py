"""The expiry listener over a real Redis Cluster: keyspace notifications are node-local,
so it subscribes on every primary, and expiries on two different primaries both count."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio.cluster import RedisCluster

from tests.cluster.conftest import Cluster
from totpd.store.keys import UserKeys
from totpd.store.redis_store import RedisStore, connect_any

DEADLINE = 10.0


async def _poll(what: str, started: float) -> None:
    assert time.monotonic() - started < DEADLINE, f"not {what} after {DEADLINE}s"
    await asyncio.sleep(0.02)  # polling a condition with a deadline, not a fixed wait


async def test_expiries_on_two_primaries_both_count(flush_cluster: Cluster) -> None:
    client = connect_any(flush_cluster.url)
    assert isinstance(client, RedisCluster)
    store = RedisStore(client, prefix="totpd")
    expired: list[None] = []
    listener = store.expiry_listener(lambda: expired.append(None))
    listener.start()
    try:
        await client.initialize()
        # Wait until every primary has the listener's pattern subscription.
        started = time.monotonic()
        primaries = client.get_primaries()
        while not all(
            [
                await client.execute_command("PUBSUB NUMPAT", target_nodes=node) >= 1
                for node in primaries
            ]
        ):
            await _poll("subscribed on every primary", started)

        # Pending keys of users whose slots live on two different primaries.
        by_node: dict[str, str] = {}
        for i in range(100):
            key = UserKeys("totpd", f"exp-cluster-{i}").pending("totp-x")
            node = client.get_node_from_key(key)
            assert node is not None
            by_node.setdefault(node.name, key)
            if len(by_node) == 2:
                break
        assert len(by_node) == 2
        for key in by_node.values():
            await client.set(key, "1")
            await client.pexpire(key, 1)
        started = time.monotonic()
        while any([await client.exists(key) for key in by_node.values()]):
            await _poll("expired", started)  # reading expires them on the spot

        started = time.monotonic()
        while len(expired) < 2:
            await _poll("both expiries counted", started)
        assert len(expired) == 2
    finally:
        await listener.close()
        await store.close()
