"""totpd over redis+sentinel:// (1 primary, 1 replica, 3 sentinels): SIGKILL the primary,
the sentinels promote the replica, and totpd carries on after a bounded burst of
UNAVAILABLE (never UNKNOWN or INTERNAL); the factor enrolled before survives."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.cluster.conftest import totpd_over
from tests.cluster.nodes import RedisNode, free_port, stop_all, wait_until
from tests.helpers import totp_code
from tests.integration.flows import STEP, activate, create, enroll, rpc_error, verify_at
from totpd.v1 import totp_service_pb2 as pb

PRIMARY_NAME = "totpd-primary"
READY_TIMEOUT = 20.0
FAILOVER_BOUND = 20.0  # seconds of UNAVAILABLE a failover may cost, at most
CALL = 2.0


@dataclass
class SentinelSetup:
    primary: RedisNode
    replica: RedisNode
    sentinels: list[RedisNode]

    @property
    def url(self) -> str:
        hosts = ",".join(s.address for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{PRIMARY_NAME}"

    def primary_port(self) -> int:
        """The primary's port according to the first sentinel that answers."""
        for sentinel in self.sentinels:
            if sentinel.process is None or sentinel.process.poll() is not None:
                continue
            with sentinel.client() as client:
                _, port = client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", PRIMARY_NAME
                )
                return int(port)
        raise AssertionError("no sentinel answers")

    def settled(self) -> bool:
        """Replica in sync, and every sentinel knows the replica and the other two."""
        with self.replica.client(timeout=0.5) as client:
            if client.info("replication")["master_link_status"] != "up":
                return False
        for sentinel in self.sentinels:
            with sentinel.client(timeout=0.5) as client:
                state = client.sentinel_master(PRIMARY_NAME)
                if state["num-other-sentinels"] != 2 or state["num-slaves"] != 1:
                    return False
        return True


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[SentinelSetup]:
    nodes: list[RedisNode] = []
    try:
        primary = RedisNode(tmp_path / "primary", free_port()).start()
        nodes.append(primary)
        replica = RedisNode(
            tmp_path / "replica", free_port(), "--replicaof", "127.0.0.1", str(primary.port)
        )
        nodes.append(replica.start())
        conf = [
            f"sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary.port} 2",
            f"sentinel down-after-milliseconds {PRIMARY_NAME} 1000",
            f"sentinel failover-timeout {PRIMARY_NAME} 3000",
            f"sentinel parallel-syncs {PRIMARY_NAME} 1",
        ]
        sentinels = []
        for i in range(3):
            sentinel = RedisNode(tmp_path / f"sentinel{i}", free_port(), *conf, sentinel=True)
            nodes.append(sentinel.start())
            sentinels.append(sentinel)
        setup = SentinelSetup(primary, replica, sentinels)
        wait_until(setup.settled, READY_TIMEOUT, "sentinels settled")
        yield setup
    finally:
        stop_all(nodes)


async def test_failover_costs_a_bounded_burst_of_unavailable(
    sentinel_setup: SentinelSetup,
) -> None:
    setup = sentinel_setup
    # First, replica acknowledgements through a Sentinel-managed primary (the
    # single-server pipeline of the script and WAIT): with the replica, then without.
    async with totpd_over(setup.url, timeout=0.5, min_replicas_ack=1) as totpd:
        await enroll(totpd, "acked-user")
        second = await create(totpd, "acked-user")
        setup.replica.signal(signal.SIGSTOP)
        try:
            error = await rpc_error(activate(totpd, second))
        finally:
            setup.replica.signal(signal.SIGCONT)
        assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
        wait_until(setup.settled, READY_TIMEOUT, "replica back in sync")

    async with totpd_over(setup.url, timeout=0.5) as totpd:
        enrolled = await enroll(totpd, "sentinel-user")
        await verify_at(totpd, enrolled, totpd.clock.now + STEP)
        # Let the replica have all of it (asynchronous replication; see the WAIT test for
        # TOTPD_REDIS_MIN_REPLICAS_ACK, which makes totpd itself wait for this).
        with setup.primary.client() as client:
            assert client.execute_command("WAIT", 1, 5000) == 1

        setup.primary.kill()
        killed = time.monotonic()
        totpd.clock.advance(2 * STEP)  # a fresh step: the next code is not a replay
        errors: list[grpc.StatusCode] = []
        while True:
            try:
                code = totp_code(enrolled.secret, totpd.clock.now)
                request = pb.VerifyTotpRequest(user_id=enrolled.user_id, code=code)
                await totpd.stub.VerifyTotp(request, timeout=CALL)
                break
            except grpc.aio.AioRpcError as error:
                errors.append(error.code())
            assert time.monotonic() - killed < FAILOVER_BOUND, f"still failing: {errors}"
            await asyncio.sleep(0.1)
        took = time.monotonic() - killed
        allowed = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
        assert set(errors) <= allowed, errors
        assert errors, "the primary died but no call noticed"
        assert setup.primary_port() == setup.replica.port
        with setup.replica.client() as client:
            assert client.info("replication")["role"] == "master"
        print(f"failover: {len(errors)} UNAVAILABLE answers over {took:.1f}s")
