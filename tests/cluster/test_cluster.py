"""totpd over a real Redis Cluster (3 primaries + 3 replicas): the whole lifecycle for
many users, whose keys land on several primaries; the eviction-policy check on every node;
and TOTPD_REDIS_MIN_REPLICAS_ACK refusing a write its replica did not acknowledge."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import grpc

from tests.cluster.conftest import Cluster, all_keys, cluster_command, totpd_over
from tests.conftest import Totpd
from tests.helpers import totp_code
from tests.integration.flows import (
    INVALID_CODE,
    LOCKED,
    STEP,
    TOTP_NOT_FOUND,
    activate,
    create,
    fail_verify,
    get,
    rpc_error,
    use_recovery_code,
    verify_at,
)
from tests.live_server import TotpdProcess
from totpd.app import StartupError, check_eviction_policy
from totpd.config import Settings
from totpd.service import Policy
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

USERS = 24
LOCKOUT = Policy().lockout.threshold


async def lifecycle(totpd: Totpd, user_id: str, before_delete: asyncio.Event) -> None:
    created = await create(totpd, user_id, request_id=f"req-{user_id}")
    again_created = await create(totpd, user_id, request_id=f"req-{user_id}")  # idempotent
    assert again_created.totp_id == created.totp_id
    assert [p.totp_id for p in (await get(totpd, user_id)).pending_totps] == [created.totp_id]
    await activate(totpd, created)
    now = totpd.clock.now
    accepted = await verify_at(totpd, created, now + STEP)
    assert accepted.totp_id == created.totp_id
    replay = await rpc_error(verify_at(totpd, created, now + STEP))
    assert (replay.code, replay.reason) == INVALID_CODE
    regenerated = await totpd.stub.RegenerateRecoveryCodes(
        pb.RegenerateRecoveryCodesRequest(user_id=user_id)
    )
    codes = list(regenerated.recovery_codes)
    used = await use_recovery_code(totpd, user_id, codes[0])
    assert used.recovery_codes_remaining == len(codes) - 1
    again = await rpc_error(use_recovery_code(totpd, user_id, codes[0]))
    assert again.code == grpc.StatusCode.INVALID_ARGUMENT
    for _ in range(LOCKOUT - 1):
        assert (await fail_verify(totpd, created)).code == grpc.StatusCode.INVALID_ARGUMENT
    locked = await rpc_error(verify_at(totpd, created, now + 2 * STEP))
    assert (locked.code, locked.reason) == LOCKED
    got = await get(totpd, user_id)
    assert got.active_totp.totp_id == created.totp_id and got.lockout.locked
    await before_delete.wait()
    deleted = await totpd.stub.DeleteTotp(pb.DeleteTotpRequest(user_id=user_id))
    assert deleted.deleted
    assert not (await get(totpd, user_id)).HasField("active_totp")
    gone = await rpc_error(verify_at(totpd, created, now + 3 * STEP))
    assert (gone.code, gone.reason) == TOTP_NOT_FOUND


async def test_lifecycle_of_many_users_spread_over_the_primaries(
    flush_cluster: Cluster,
) -> None:
    cluster = flush_cluster
    primaries, replicas = cluster.by_role()
    assert len(primaries) == 3 and len(replicas) == 3
    before_delete = asyncio.Event()
    async with totpd_over(cluster.url) as totpd:
        users = [f"cluster-user-{i}" for i in range(USERS)]
        runs = asyncio.gather(*(lifecycle(totpd, u, before_delete) for u in users))
        # Every user is enrolled, used and locked: look at where their keys are.
        deadline = time.monotonic() + 20

        def locked_users() -> int:
            keys = all_keys(list(primaries.values()))
            return sum(k.endswith(b":lockout") for ks in keys.values() for k in ks)

        while locked_users() < USERS:
            assert time.monotonic() < deadline and not runs.done(), "lifecycles stalled"
            await asyncio.sleep(0.05)
        keys = all_keys(list(primaries.values()))
        tags_by_port = {
            port: {k.split(b"{", 1)[1].split(b"}", 1)[0] for k in ks if b"{" in k}
            for port, ks in keys.items()
        }
        assert sum(bool(tags) for tags in tags_by_port.values()) >= 2, tags_by_port
        assert sum(len(tags) for tags in tags_by_port.values()) == USERS
        # One user's keys share a slot (KEYSLOT agrees), hence one node.
        any_primary = next(iter(primaries.values()))
        with any_primary.client() as client:
            for port, ks in keys.items():
                user_keys = [k for k in ks if b"{" in k]
                slots_by_tag: dict[bytes, set[int]] = {}
                for k in user_keys:
                    tag = k.split(b"{", 1)[1].split(b"}", 1)[0]
                    slots_by_tag.setdefault(tag, set()).add(
                        int(cluster_command(client, "KEYSLOT", k.decode()))
                    )
                assert all(len(s) == 1 for s in slots_by_tag.values()), port
        # The audit stream lives in its own slot, on one primary.
        assert sum(b"totpd:events" in ks for ks in keys.values()) == 1
        before_delete.set()
        await runs
    left = all_keys(list(primaries.values()))
    # Only CreateTotp's idempotency keys stay, until their TTL.
    assert not [k for ks in left.values() for k in ks if b"{" in k and b":idem:" not in k]


async def test_eviction_policy_is_checked_on_every_node(redis_cluster: Cluster) -> None:
    async with totpd_over(redis_cluster.url) as totpd:
        await check_eviction_policy(totpd.store, Settings())  # all noeviction: passes
        _, replicas = redis_cluster.by_role()
        replica = next(iter(replicas.values()))
        with replica.client() as client:
            client.config_set("maxmemory-policy", "allkeys-lru")
        try:
            try:
                await check_eviction_policy(totpd.store, Settings())
            except StartupError as error:
                assert "allkeys-lru" in str(error) and replica.address in str(error)
            else:
                raise AssertionError("an evicting replica went unnoticed")
        finally:
            with replica.client() as client:
                client.config_set("maxmemory-policy", "noeviction")


async def test_min_replicas_ack_refuses_a_write_its_replica_did_not_acknowledge(
    flush_cluster: Cluster,
) -> None:
    cluster = flush_cluster
    timeout = 1.0
    async with totpd_over(cluster.url, min_replicas_ack=1, timeout=timeout) as totpd:
        user = "wait-user"
        created = await create(totpd, user)
        await activate(totpd, created)  # the replica acknowledged: OK
        await verify_at(totpd, created, totpd.clock.now + STEP)

        # The user's primary, and its replica, which now stops acknowledging.
        primaries, _ = cluster.by_role()
        owner = next(
            node
            for node in primaries.values()
            if any(k.endswith(b":active") for k in all_keys([node])[node.port])
        )
        replica = cluster.replica_of(owner)
        second = await create(totpd, user)
        replica.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            error = await rpc_error(activate(totpd, second))
            took = time.monotonic() - started
            assert error.code == grpc.StatusCode.UNAVAILABLE, error
            assert error.reason == "STORE_UNAVAILABLE"
            assert timeout / 2 <= took < timeout + 1.0, took
        finally:
            replica.signal(signal.SIGCONT)
        # The write happened on the primary (not known durable): a retry sees its result.
        with owner.client() as client:
            active = [k for k in client.scan_iter(match="*:active")]
            assert client.hget(active[0], "id") == second.totp_id.encode()
        # Once the replica catches up, replicated writes succeed again.
        deadline = time.monotonic() + 10
        while True:
            try:
                await verify_at(totpd, second, totpd.clock.now + STEP)
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)


async def test_script_runs_after_the_script_cache_is_flushed(flush_cluster: Cluster) -> None:
    async with totpd_over(flush_cluster.url, min_replicas_ack=1) as totpd:
        created = await create(totpd, "flushed-scripts")
        primaries, _ = flush_cluster.by_role()
        for node in primaries.values():
            with node.client() as client:
                client.script_flush()
        await activate(totpd, created)  # EVALSHA answers NOSCRIPT; EVAL takes over
    async with totpd_over(flush_cluster.url, keyring=totpd.keyring) as totpd:
        for node in primaries.values():
            with node.client() as client:
                client.script_flush()
        got = await get(totpd, "flushed-scripts")
        assert got.active_totp.totp_id == created.totp_id
        await verify_at(totpd, created, totpd.clock.now + STEP)  # AsyncScript reloads it


async def test_python_m_totpd_serves_from_the_cluster(
    redis_cluster: Cluster, tmp_path: Path
) -> None:
    server = TotpdProcess(
        tmp_path / "totpd", REDIS_URL=redis_cluster.url, REDIS_MIN_REPLICAS_ACK="1"
    )
    address = server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.TotpServiceStub(channel)
            created = await stub.CreateTotp(
                pb.CreateTotpRequest(user_id="process-user", qr_code_size=64), timeout=5
            )
            code = totp_code(created.secret, time.time())
            request = pb.ActivateTotpRequest(
                user_id="process-user", totp_id=created.totp_id, code=code
            )
            await stub.ActivateTotp(request, timeout=5)
            got = await stub.GetTotp(pb.GetTotpRequest(user_id="process-user"), timeout=5)
            assert got.active_totp.totp_id == created.totp_id
    finally:
        assert server.stop() == 0, server.log
