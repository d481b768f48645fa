"""Redis Cluster failure, on a cluster of its own (3 primaries + 3 replicas,
``cluster-node-timeout 1000``) so the session cluster keeps its roles:

- the health probe (``RedisStore.ping``) is unhealthy while one primary is stopped and
  healthy again once it continues;
- SIGKILL of a primary: its replica takes over, the users on that primary get only
  UNAVAILABLE / DEADLINE_EXCEEDED for a bounded time, then VerifyTotp works again with
  the data the replica had, and a code accepted before the kill is still a replay."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import grpc
import pytest
from redis.crc import key_slot

from tests.cluster.conftest import CLUSTER_TIMEOUT, Cluster, running_cluster, totpd_over
from tests.cluster.nodes import RedisNode, wait_until
from tests.conftest import FakeClock
from tests.helpers import error_details, totp_code
from tests.integration.flows import INVALID_CODE, STEP, enroll, verify_at
from totpd.errors import StoreUnavailable
from totpd.keyring import Keyring
from totpd.store.keys import UserKeys
from totpd.store.redis_store import RedisStore, connect_cluster
from totpd.v1 import totp_service_pb2 as pb

NODE_TIMEOUT_MS = 1000
FAILOVER_BOUND = 20.0  # seconds of errors a failover may cost, at most
HEALTH_BOUND = 10.0
CALL = 2.0
STORE_TIMEOUT = 0.5
VICTIM_USERS = 3
OUTAGE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Its own cluster, with a short node timeout: failing over changes the roles.
    root = tmp_path_factory.mktemp("failover-cluster")
    with running_cluster(root, node_timeout_ms=NODE_TIMEOUT_MS) as cluster:
        yield cluster


def owner_port(node: RedisNode, slot: int) -> int:
    """The port of the primary serving ``slot``, as ``node`` sees it (CLUSTER SLOTS)."""
    with node.client() as client:
        for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return int(primary[1])
    raise AssertionError(f"slot {slot} is not served")


def users_on(node: RedisNode, count: int, prefix: str) -> list[str]:
    """``count`` user ids whose keys (one hash tag per user) live on primary ``node``."""
    users: list[str] = []
    for i in range(10_000):
        user_id = f"{prefix}-{i}"
        if owner_port(node, key_slot(UserKeys("totpd", user_id).active.encode())) == node.port:
            users.append(user_id)
            if len(users) == count:
                return users
    raise AssertionError(f"no users found on {node.address}")


async def serving(store: RedisStore) -> bool:
    """What the health probe concludes: SERVING iff ping() is True."""
    try:
        return await asyncio.wait_for(store.ping(), CALL)
    except (StoreUnavailable, TimeoutError):
        return False


async def poll_serving(store: RedisStore, wanted: bool, bound: float) -> float:
    started = time.monotonic()
    while await serving(store) != wanted:
        assert time.monotonic() - started < bound, f"health not {wanted} after {bound}s"
        await asyncio.sleep(0.05)  # polling with a deadline, not a fixed wait
    return time.monotonic() - started


async def test_health_is_not_serving_while_a_primary_is_stopped(own_cluster: Cluster) -> None:
    cluster = own_cluster
    wait_until(cluster.healthy, CLUSTER_TIMEOUT, "cluster healthy")
    primaries, _ = cluster.by_role()
    client = connect_cluster(cluster.url, STORE_TIMEOUT)
    store = RedisStore(client)
    try:
        assert await serving(store)
        # Not the client's default node: a PING to that one alone would notice too.
        default = client.get_default_node().port
        stopped = next(
            n for n in sorted(primaries.values(), key=lambda n: n.port) if n.port != default
        )
        stopped.signal(signal.SIGSTOP)
        try:
            took = await poll_serving(store, False, HEALTH_BOUND)
        finally:
            stopped.signal(signal.SIGCONT)
        print(f"NOT_SERVING {took:.2f}s after SIGSTOP of {stopped.address}")
        took = await poll_serving(store, True, HEALTH_BOUND)
        print(f"SERVING {took:.2f}s after SIGCONT")
    finally:
        await store.close()
    # The stop may have outlasted cluster-node-timeout (a failover): settle either way.
    wait_until(cluster.healthy, CLUSTER_TIMEOUT, "cluster healthy again")


async def test_health_is_not_serving_while_a_primary_sees_a_slot_unserved(
    own_cluster: Cluster,
) -> None:
    """cluster_state:fail on one primary (it dropped one of its slots, so not every slot
    is served) is NOT_SERVING although every primary answers."""
    cluster = own_cluster
    wait_until(cluster.healthy, CLUSTER_TIMEOUT, "cluster healthy")
    primaries, _ = cluster.by_role()
    owner = sorted(primaries.values(), key=lambda n: n.port)[1]
    with owner.client() as admin:
        slot = next(
            int(start)
            for start, _, primary, *_ in admin.execute_command("CLUSTER SLOTS")
            if int(primary[1]) == owner.port
        )
        store = RedisStore(connect_cluster(cluster.url, STORE_TIMEOUT))
        try:
            assert await serving(store)
            admin.execute_command("CLUSTER", "DELSLOTS", slot)
            try:
                await poll_serving(store, False, HEALTH_BOUND)
            finally:
                admin.execute_command("CLUSTER", "ADDSLOTS", slot)
            await poll_serving(store, True, HEALTH_BOUND)
        finally:
            await store.close()
    wait_until(cluster.healthy, CLUSTER_TIMEOUT, "cluster healthy again")


async def test_primary_failover_costs_a_bounded_burst_and_keeps_replay_protection(
    own_cluster: Cluster,
) -> None:
    cluster = own_cluster
    wait_until(cluster.healthy, CLUSTER_TIMEOUT, "cluster healthy")
    primaries, _ = cluster.by_role()
    victim = sorted(primaries.values(), key=lambda n: n.port)[0]
    replica = cluster.replica_of(victim)
    users = users_on(victim, VICTIM_USERS, "failover-user")
    clock = FakeClock()
    keyring = Keyring.generate()
    now = clock.now

    # Enrollment with replica acknowledgement: the activation and the accepted code (its
    # replay record) are on the victim's replica before the call returns.
    async with totpd_over(
        cluster.url, clock=clock, keyring=keyring, min_replicas_ack=1, timeout=STORE_TIMEOUT
    ) as totpd:
        enrolled = [await enroll(totpd, user_id) for user_id in users]
        for created in enrolled:
            await verify_at(totpd, created, now + STEP)  # step S+1: accepted
    with replica.client() as client:
        client.execute_command("READONLY")  # this connection may read a replica's keys
        for user_id in users:
            assert client.exists(UserKeys("totpd", user_id).active)

    async with totpd_over(
        cluster.url, clock=clock, keyring=keyring, timeout=STORE_TIMEOUT
    ) as totpd:
        assert await serving(totpd.store)
        victim.kill()
        killed = time.monotonic()
        # A step later: S+1 (accepted before the kill) is still inside the window, so it
        # must be refused as a replay; S+2 is a fresh code.
        clock.advance(STEP)
        errors: list[grpc.StatusCode] = []
        recovered: set[str] = set()
        went_unhealthy = False
        while len(recovered) < len(enrolled):
            assert time.monotonic() - killed < FAILOVER_BOUND, f"still failing: {errors}"
            went_unhealthy |= not await serving(totpd.store)
            for created in enrolled:
                if created.user_id in recovered:
                    continue
                replay = pb.VerifyTotpRequest(
                    user_id=created.user_id, code=totp_code(created.secret, now + STEP)
                )
                fresh = pb.VerifyTotpRequest(
                    user_id=created.user_id, code=totp_code(created.secret, now + 2 * STEP)
                )
                try:
                    await totpd.stub.VerifyTotp(replay, timeout=CALL)
                    raise AssertionError(f"a replayed code was accepted: {created.user_id}")
                except grpc.aio.AioRpcError as error:
                    details = error_details(error)
                    if (details.code, details.reason) != INVALID_CODE:
                        assert details.code in OUTAGE_CODES, (details.code, details.reason)
                        errors.append(details.code)
                        continue
                try:
                    verified = await totpd.stub.VerifyTotp(fresh, timeout=CALL)
                except grpc.aio.AioRpcError as error:
                    assert error.code() in OUTAGE_CODES, (error.code(), error.details())
                    errors.append(error.code())
                    continue
                assert verified.totp_id == created.totp_id
                recovered.add(created.user_id)
            await asyncio.sleep(0.05)  # polling with a deadline, not a fixed wait
        took = time.monotonic() - killed
        assert errors, "the primary died but no call noticed"
        # Promoted: the replica serves the victim's slots now.
        assert owner_port(replica, key_slot(UserKeys("totpd", users[0]).active.encode())) == (
            replica.port
        )
        # Replay protection holds on the promoted replica, for both accepted codes.
        for created in enrolled:
            for step in (now + STEP, now + 2 * STEP):
                try:
                    await verify_at(totpd, created, step)
                    raise AssertionError("a replayed code was accepted after the failover")
                except grpc.aio.AioRpcError as error:
                    details = error_details(error)
                    assert (details.code, details.reason) == INVALID_CODE
        await poll_serving(totpd.store, True, HEALTH_BOUND)
        print(
            f"cluster failover: {len(errors)} errors over {took:.1f}s "
            f"(health went NOT_SERVING: {went_unhealthy})"
        )
        assert went_unhealthy, "health stayed SERVING while a primary was down"
