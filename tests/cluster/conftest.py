"""A real Redis Cluster (3 primaries, 3 replicas) for the session, and a totpd server in
the test's event loop over any TOTPD_REDIS_URL form (docs/reliability.md)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis

from tests.cluster.nodes import RedisNode, free_port, redis_cli, stop_all, wait_until
from tests.conftest import FakeClock, Totpd
from totpd.api.server import create_server
from totpd.app import check_eviction_policy
from totpd.config import Settings
from totpd.keyring import Keyring
from totpd.service import Policy, TotpService
from totpd.store.redis_store import RedisStore, connect_any
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

CLUSTER_TIMEOUT = 20.0


@dataclass
class Cluster:
    nodes: list[RedisNode]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.nodes[:2])

    def by_role(self) -> tuple[dict[str, RedisNode], dict[str, RedisNode]]:
        """(primaries, replicas), each by node id."""
        primaries: dict[str, RedisNode] = {}
        replicas: dict[str, RedisNode] = {}
        for node in self.nodes:
            with node.client() as client:
                lines = cluster_command(client, "NODES").splitlines()
            node_id, _, flags = next(line for line in lines if "myself" in line).split()[:3]
            (primaries if "master" in flags else replicas)[node_id] = node
        return primaries, replicas

    def replica_of(self, primary: RedisNode) -> RedisNode:
        with primary.client() as client:
            replication = client.info("replication")
        port = int(replication["slave0"]["port"])
        return next(n for n in self.nodes if n.port == port)

    def healthy(self) -> bool:
        """Every node sees every slot served, and every primary has its replica online."""
        for node in self.nodes:
            with node.client(timeout=0.5) as client:
                info = dict(line.split(":", 1) for line in cluster_command(client, "INFO").split())
                if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != 16384:
                    return False
                # Each node's view has every replica as one (gossip spreads it late), so
                # CLUSTER SLOTS, which clients read, lists all of them.
                views = [line.split()[2] for line in cluster_command(client, "NODES").splitlines()]
                if sum("slave" in flags for flags in views) != 3 or any("fail" in f for f in views):
                    return False
                replication = client.info("replication")
                if replication["role"] == "master":
                    slave = replication.get("slave0")
                    if replication["connected_slaves"] != 1 or slave["state"] != "online":
                        return False
                elif replication["master_link_status"] != "up":
                    return False
        return True


def cluster_command(client: redis.Redis, *args: str) -> str:
    """A CLUSTER subcommand's text reply (the plain client does not parse them)."""
    reply = client.execute_command("CLUSTER", *args)
    return reply.decode() if isinstance(reply, bytes) else str(reply)


@contextlib.contextmanager
def running_cluster(root: Path, node_timeout_ms: int = 2000) -> Iterator[Cluster]:
    """A real cluster of 3 primaries + 3 replicas on loopback, stopped when the block ends."""
    nodes: list[RedisNode] = []
    try:
        for i in range(6):
            port = free_port(cluster_bus=True)
            node = RedisNode(
                root / f"n{i}",
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
            )
            nodes.append(node.start())
        subprocess.run(
            [redis_cli(), "--cluster", "create", *(n.address for n in nodes)]
            + ["--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            timeout=CLUSTER_TIMEOUT,
        )
        cluster = Cluster(nodes)
        wait_until(cluster.healthy, CLUSTER_TIMEOUT, "cluster_state:ok with replicas online")
        yield cluster
    finally:
        stop_all(nodes)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def flush_cluster(redis_cluster: Cluster) -> Cluster:
    primaries, _ = redis_cluster.by_role()
    for node in primaries.values():
        with node.client() as client:
            client.flushall()
    return redis_cluster


@contextlib.asynccontextmanager
async def totpd_over(
    url: str,
    *,
    clock: FakeClock | None = None,
    policy: Policy | None = None,
    min_replicas_ack: int = 0,
    timeout: float = 1.0,
    keyring: Keyring | None = None,
) -> AsyncIterator[Totpd]:
    """A totpd server in this event loop whose store connects to ``url`` as the server's
    composition root would (connect_any), stopped with everything it opened."""
    clock = clock or FakeClock()
    keyring = keyring or Keyring.generate()
    store = RedisStore(
        connect_any(url, timeout),
        min_replicas_ack=min_replicas_ack,
        replica_ack_timeout=timeout / 2,
    )
    # As serve() does before it listens: the startup check connects to every node.
    await check_eviction_policy(store, Settings())
    service = TotpService(store, keyring, policy or Policy(), clock=clock)
    server, port = create_server(service, "127.0.0.1:0")
    await server.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Totpd(
            pb_grpc.TotpServiceStub(channel),
            channel,
            address,
            store._redis,  # type: ignore[arg-type]  # may be a RedisCluster here
            store,
            service,
            clock,
            keyring,
        )
    finally:
        await channel.close()
        await server.stop(None)
        await store.close()


def all_keys(nodes: list[RedisNode]) -> dict[int, list[bytes]]:
    """Every key of each node, by port."""
    out: dict[int, list[bytes]] = {}
    for node in nodes:
        with node.client() as client:
            out[node.port] = list(client.scan_iter(count=1000))
    return out
