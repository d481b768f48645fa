"""Redis SIGKILLed and restarted in the middle of a steady load of every RPC.

Durability choice: this test's Redis runs with ``appendfsync always``, so the promise under
test is the strong one: every activation answered OK is in the AOF (written and fsynced)
before the reply, and so exists after the restart. With the embedded default,
``appendfsync everysec``, Redis still write(2)s the AOF buffer before it replies, so a
SIGKILL of the process alone (the kernel keeps the page cache) loses nothing either, except
when a slow background fsync makes Redis postpone that write (up to 2 s); a machine crash
or power loss can lose about the last second of acknowledged writes. That weaker promise
depends on the disk's timing, so it is not what a deterministic test asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.faults.conftest import MakeRedis, OpenChannel, StartTotpd
from tests.faults.harness import (
    NOT_SERVING,
    SERVING,
    wait_for_health,
    wait_until,
    watch_health,
)
from tests.faults.load import Client, Ledger
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

CLIENTS = 4


async def test_redis_sigkill_and_restart_under_load(
    make_redis: MakeRedis, start_totpd: StartTotpd, open_channel: OpenChannel
) -> None:
    redis_server = make_redis(appendfsync="always")
    server = start_totpd(redis_server.url, REDIS_TIMEOUT_SECONDS="0.5")
    channel = open_channel(server.address)
    await wait_for_health(channel, SERVING, timeout=5)
    health_seen: list[tuple[float, int]] = []
    watcher = asyncio.create_task(watch_health(open_channel(server.address), health_seen))

    ledger = Ledger()
    stop = asyncio.Event()
    clients = [
        Client(f"c{i}", pb_grpc.TotpServiceStub(open_channel(server.address)), ledger)
        for i in range(CLIENTS)
    ]
    load = [asyncio.create_task(client.run(stop)) for client in clients]
    try:

        async def activations_at_least(n: int) -> bool:
            assert not any(task.done() for task in load), "a load client crashed"
            return len(ledger.activated) >= n

        async def activated(n: int) -> None:
            await wait_until(lambda: activations_at_least(n), 15, f"{n} activations")

        await activated(3 * CLIENTS)
        killed_at = time.monotonic()
        redis_server.kill()
        await wait_for_health(channel, NOT_SERVING, timeout=5)
        before_restart = len(ledger.activated)
        redis_server.start()  # same directory: replays the AOF
        await wait_for_health(channel, SERVING, timeout=10)
        await activated(before_restart + 2 * CLIENTS)  # recovered by itself, under load
    finally:
        stop.set()
        done = await asyncio.wait_for(asyncio.gather(*load, return_exceptions=True), 10)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert not [r for r in done if isinstance(r, BaseException)], done

    assert not ledger.violations, "\n".join(ledger.violations[:20])
    # The kill was felt: some calls failed as UNAVAILABLE, none as anything worse.
    assert ledger.count("CreateTotp", "UNAVAILABLE") > 0, ledger.answers
    codes = {code for (_, code, _) in ledger.answers}
    assert codes <= {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED", "INVALID_ARGUMENT"}, ledger.answers

    # Health: SERVING, then NOT_SERVING after the kill, then SERVING again.
    after = [status for at, status in health_seen if at >= killed_at]
    assert health_seen and health_seen[0][1] == SERVING, health_seen
    assert NOT_SERVING in after, health_seen
    assert after[-1] == SERVING and after.index(NOT_SERVING) < len(after) - 1, health_seen

    # Every activation answered OK survived the SIGKILL.
    stub = pb_grpc.TotpServiceStub(channel)
    lost = []
    for user, totp_id in ledger.activated.items():
        status = await stub.GetTotp(pb.GetTotpRequest(user_id=user), timeout=5)
        if status.active_totp.totp_id != totp_id:
            lost.append(user)
    assert not lost, f"{len(lost)} of {len(ledger.activated)} activations lost: {lost[:10]}"
