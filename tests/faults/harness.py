"""The fault suite's harness: a redis-server child the test can SIGKILL, SIGSTOP and
restart, ``python -m totpd`` processes pointed at it, and small asyncio helpers that wait
on conditions with deadlines (never on fixed sleeps).

Everything listens on loopback or on a Unix socket under the test's temporary directory,
and every process is stopped in ``finally`` blocks (the fixtures in ``conftest``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import error_details, totp_code
from totpd.embedded_redis import find_binary
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

SERVICE = "totpd.v1.TotpService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# As in totpd.embedded_redis: the child asks Linux for SIGTERM when the test process dies,
# then becomes redis-server (same pid, so the test can signal it directly).
_EXEC_WITH_PARENT_DEATH_SIGNAL = """
import ctypes, os, sys
try:
    ctypes.CDLL(None).prctl(1, 15)
except (OSError, AttributeError):
    pass
os.execv(sys.argv[1], sys.argv[1:])
"""


class RedisChild:
    """A redis-server on a Unix socket with an AOF in ``directory``; ``start`` again after
    ``kill`` replays the AOF. Unlike ``EmbeddedRedis`` it exposes the process, so a test
    can SIGKILL or SIGSTOP it, and takes the fsync policy as a parameter."""

    def __init__(self, directory: Path, *, appendfsync: str = "everysec") -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "redis.sock"
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)

    def start(self, timeout: float = 15.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        args = [
            find_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            "redis.log",
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-c", _EXEC_WITH_PARENT_DEATH_SIGNAL, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        client = self.client()
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited: see {self.directory}/redis.log")
                try:
                    if self.socket.exists() and client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                time.sleep(0.02)  # polling a condition with a deadline
        finally:
            client.close()
        raise RuntimeError(f"redis-server not ready after {timeout}s")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None and self.process.poll() is None
        os.kill(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final AOF flush."""
        assert self.process is not None
        self.signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """Idempotent; thaws a frozen server first."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
