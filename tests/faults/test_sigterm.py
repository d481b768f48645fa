"""SIGTERM while calls are in flight: health goes NOT_SERVING first, new calls are refused
(UNAVAILABLE), the calls in flight still finish OK within the grace period, and the process
exits 0.

To have calls that are provably in flight, Redis pauses its writers (``CLIENT PAUSE ...
WRITE``: scripts wait, reads and the health probe's PING go on). The test sends SIGTERM
once the server's ``totpd_rpcs_in_flight`` counts every call it made (plus at most one per
load client) and Redis lists a blocked client (totpd's pipelined connection, waiting on a
script; the calls behind it queue in totpd), and releases them (``CLIENT UNPAUSE``) once
the server is shutting down.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

import grpc

from tests.faults.conftest import MakeRedis, OpenChannel, StartTotpd
from tests.faults.harness import (
    NOT_SERVING,
    SERVING,
    enroll,
    outcome,
    wait_for_health,
    wait_until,
    watch_health,
)
from tests.faults.load import Client, Ledger
from tests.helpers import totp_code
from tests.live_server import metrics_url, scrape
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

GRACE = 4.0
IN_FLIGHT = 3  # of each kind: VerifyTotp and CreateTotp
SLACK = 1.0


async def finished_at(call: Any) -> tuple[tuple[str, str], float]:
    try:
        await call
        got = ("OK", "")
    except grpc.aio.AioRpcError as error:
        got = outcome(error)
    return got, time.monotonic()


async def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(
    make_redis: MakeRedis, start_totpd: StartTotpd, open_channel: OpenChannel
) -> None:
    redis_server = make_redis()
    server = start_totpd(
        redis_server.url,
        METRICS_LISTEN="127.0.0.1:0",
        SHUTDOWN_GRACE_SECONDS=str(GRACE),
        REDIS_TIMEOUT_SECONDS="10",  # the paused scripts wait for Redis, not time out
    )
    channel = open_channel(server.address)
    stub = pb_grpc.TotpServiceStub(channel)
    await wait_for_health(channel, SERVING, timeout=5)
    users = [await enroll(stub, f"term-{n}") for n in range(IN_FLIGHT)]
    health_seen: list[tuple[float, int]] = []
    watcher = asyncio.create_task(watch_health(open_channel(server.address), health_seen))

    # A steady load from other clients too: whatever it gets must be a clean answer.
    ledger = Ledger()
    ledger.infra.add(("UNAVAILABLE", ""))  # the server going away
    stop = asyncio.Event()
    load = [
        asyncio.create_task(
            Client(f"l{i}", pb_grpc.TotpServiceStub(open_channel(server.address)), ledger).run(stop)
        )
        for i in range(3)
    ]
    admin = redis_server.client()
    in_flight: list[asyncio.Task[tuple[tuple[str, str], float]]] = []
    try:
        await wait_until(lambda: _at_least(ledger, 3), 10, "some load")
        admin.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
        for created in users:
            code = totp_code(created.secret, time.time() + 30)
            verify = stub.VerifyTotp(
                pb.VerifyTotpRequest(user_id=created.user_id, code=code), timeout=GRACE + 5
            )
            create = stub.CreateTotp(
                pb.CreateTotpRequest(user_id=f"{created.user_id}-new", qr_code_size=64),
                timeout=GRACE + 5,
            )
            in_flight += [asyncio.create_task(finished_at(c)) for c in (verify, create)]

        metrics = metrics_url(server)

        async def all_waiting_on_redis() -> bool:
            _, samples = await asyncio.to_thread(scrape, metrics)
            in_flight_now = sum(
                v for (name, _), v in samples.items() if name == "totpd_rpcs_in_flight"
            )
            # The load clients have one call each in flight at most: so ours are all in.
            return in_flight_now >= 2 * IN_FLIGHT + len(load) and (
                int(admin.info("clients")["blocked_clients"]) >= 1
            )

        await wait_until(all_waiting_on_redis, 5, "in-flight calls waiting on Redis")
        assert not any(task.done() for task in in_flight)

        sigterm_at = time.monotonic()
        server.send_signal(signal.SIGTERM)

        async def not_serving_seen() -> bool:
            return any(status == NOT_SERVING for _, status in health_seen)

        await wait_until(not_serving_seen, 5, "health NOT_SERVING")
        assert not any(task.done() for task in in_flight), "in-flight calls ended early"

        # New calls are refused, on a fresh connection and on the one in use alike.
        async def refused(target: pb_grpc.TotpServiceStub) -> bool:
            try:
                await target.GetTotp(pb.GetTotpRequest(user_id="term-0"), timeout=1)
            except grpc.aio.AioRpcError as error:
                return error.code() == grpc.StatusCode.UNAVAILABLE
            return False

        fresh = pb_grpc.TotpServiceStub(open_channel(server.address))
        await wait_until(lambda: refused(fresh), 2, "a new call refused (new connection)")
        await wait_until(lambda: refused(stub), 2, "a new call refused (open connection)")
        assert not any(task.done() for task in in_flight), "in-flight calls ended early"

        stop.set()  # the load has met the shutdown; it need not spin on a closed port
        admin.execute_command("CLIENT", "UNPAUSE")
        results = await asyncio.wait_for(asyncio.gather(*in_flight), GRACE + SLACK)
        code = await asyncio.to_thread(server.wait, GRACE + SLACK)
        exited_at = time.monotonic()
    finally:
        with contextlib.suppress(Exception):
            admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*load, return_exceptions=True), 10)
        for task in in_flight:
            task.cancel()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    assert [got for got, _ in results] == [("OK", "")] * len(results), results
    late = [round(at - sigterm_at, 3) for _, at in results if at - sigterm_at > GRACE]
    assert not late, f"in-flight calls finished after the {GRACE}s grace: {late}"
    assert code == 0, server.log
    assert exited_at - sigterm_at <= GRACE + SLACK, exited_at - sigterm_at
    statuses = [status for _, status in health_seen]
    assert statuses[0] == SERVING and statuses[-1] == NOT_SERVING, health_seen
    assert not ledger.violations, "\n".join(ledger.violations[:20])
    assert any("shutting down" in line for line in server.lines), server.log


async def _at_least(ledger: Ledger, n: int) -> bool:
    return len(ledger.activated) >= n


async def test_an_open_health_watch_does_not_hold_the_shutdown(
    make_redis: MakeRedis, start_totpd: StartTotpd, open_channel: OpenChannel
) -> None:
    """A client watching health (gRPC client-side health checking uses Watch) sees
    NOT_SERVING, then its stream ends: it must not keep an idle server up for the grace."""
    redis_server = make_redis()
    server = start_totpd(redis_server.url, SHUTDOWN_GRACE_SECONDS="10")
    channel = open_channel(server.address)
    await wait_for_health(channel, SERVING, timeout=5)
    health_seen: list[tuple[float, int]] = []
    watcher = asyncio.create_task(watch_health(channel, health_seen))
    try:
        await wait_until(lambda: _seen(health_seen, SERVING), 5, "Watch sends SERVING")
        sigterm_at = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.wait, 10 + SLACK)
        took = time.monotonic() - sigterm_at
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert code == 0, server.log
    assert [status for _, status in health_seen] == [SERVING, NOT_SERVING], health_seen
    assert took < SLACK, f"an idle server took {took:.2f}s to stop (grace 10 s)"


async def _seen(health_seen: list[tuple[float, int]], status: int) -> bool:
    return any(s == status for _, s in health_seen)
