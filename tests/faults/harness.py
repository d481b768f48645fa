"""The fault suite's harness: a redis-server child the test can SIGKILL, SIGSTOP and
restart, ``python -m totpd`` processes pointed at it, and small asyncio helpers that wait
on conditions with deadlines (never on fixed sleeps).

Everything listens on loopback or on a Unix socket under the test's temporary directory,
and every process is stopped in ``finally`` blocks (the fixtures in ``conftest``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import error_details, totp_code
from totpd.embedded_redis import EmbeddedRedis
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

SERVICE = "totpd.v1.TotpService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class RedisChild(EmbeddedRedis):
    """The embedded redis-server (a Unix socket, an AOF in ``directory``, dies with the test
    process) with what fault tests need: a blocking admin client, and ``signal``."""

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)

    def signal(self, sig: signal.Signals) -> None:
        self.send_signal(sig)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float, what: str, poll: float = 0.02
) -> None:
    """Poll an async condition until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(poll)  # polling a condition with a deadline, not a fixed wait


async def health_status(channel: grpc.aio.Channel) -> int | None:
    """The server's health for TotpService, or None if it did not answer."""
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=0.5
        )
    except grpc.aio.AioRpcError:
        return None
    return int(reply.status)


async def wait_for_health(channel: grpc.aio.Channel, wanted: int, timeout: float) -> None:
    async def reached() -> bool:
        return await health_status(channel) == wanted

    name = health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)
    await wait_until(reached, timeout, f"health {name}")


def outcome(error: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(status code name, ErrorInfo.reason) of a failed call."""
    details = error_details(error)
    return details.code.name, details.reason


# Answers that say "the store (or the deadline) failed this call", which any call may get
# while Redis is down, frozen or full. Never UNKNOWN or INTERNAL.
INFRA = {
    ("UNAVAILABLE", "STORE_UNAVAILABLE"),
    ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"),
    ("DEADLINE_EXCEEDED", ""),  # the client's deadline fired before the server answered
    ("UNAVAILABLE", ""),  # transport: the server is unreachable or going away
}


async def watch_health(channel: grpc.aio.Channel, seen: list[tuple[float, int]]) -> None:
    """Record every status the server's health Watch stream sends."""
    stub = health_pb2_grpc.HealthStub(channel)
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        async for reply in stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE)):
            seen.append((time.monotonic(), int(reply.status)))


async def enroll(stub: pb_grpc.TotpServiceStub, user: str) -> pb.CreateTotpResponse:
    created = await stub.CreateTotp(pb.CreateTotpRequest(user_id=user), timeout=5)
    code = totp_code(created.secret, time.time())
    request = pb.ActivateTotpRequest(user_id=user, totp_id=created.totp_id, code=code)
    await stub.ActivateTotp(request, timeout=5)
    return created
