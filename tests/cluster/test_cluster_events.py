"""On Redis Cluster the audit stream is in another slot than a user's keys, so the store
appends a decision's events with XADDs of its own right after the script: the same events,
byte for byte, as the scripts themselves append on one server."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from tests.cluster.conftest import Cluster
from tests.integration.audit_flows import EXPECTED, run_decisions
from totpd.store.redis_store import RedisStore, connect_any

Fields = list[tuple[bytes, bytes]]


async def _stream(client: aioredis.Redis | RedisCluster, prefix: str) -> list[Fields]:
    return [list(fields.items()) for _, fields in await client.xrange(f"{prefix}:events")]


async def test_a_cluster_records_the_events_one_server_records_in_its_scripts(
    flush_cluster: Cluster, redis_client: aioredis.Redis
) -> None:
    cluster = connect_any(flush_cluster.url)
    try:
        await run_decisions(RedisStore(cluster, "cmp"))
        clustered = await _stream(cluster, "cmp")
    finally:
        await cluster.aclose()
    await run_decisions(RedisStore(redis_client, "cmp"))

    single = await _stream(redis_client, "cmp")
    assert [(dict(e)[b"type"].decode(), dict(e)[b"outcome"].decode()) for e in single] == EXPECTED
    assert clustered == single


async def test_a_cluster_store_cannot_append_events_in_its_scripts(redis_cluster: Cluster) -> None:
    cluster = connect_any(redis_cluster.url)
    try:
        with pytest.raises(ValueError, match="another slot"):
            RedisStore(cluster, events_in_scripts=True)
    finally:
        await cluster.aclose()
