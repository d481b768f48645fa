"""Fixtures of the black-box suite: the real ``python -m totpd`` as a child process (with its
embedded redis-server), and grpcurl as its client.

A server is ready when it logs ``totpd listening on <host>:<port>``: a reader thread hands
each stderr line to the test thread, which waits for that line up to a deadline (no sleeps).
On teardown every server gets SIGTERM and must exit 0, and no log line may contain a secret
that the test saw (the TOTP secrets, otpauth URIs and recovery codes it put in
``seen_secrets``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.live_server import TotpdProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
GRPCURL_TIMEOUT = 15.0
SERVICE = "totpd.v1.TotpService"


StartServer = Callable[..., TotpdProcess]


@pytest.fixture
def seen_secrets() -> list[str]:
    """Secret strings a test saw (TOTP secrets, otpauth URIs, recovery codes); teardown
    checks that no server ever logged any of them."""
    return []


@pytest.fixture
def start_server(
    seen_secrets: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartServer]:
    """Start ``python -m totpd`` processes; ``data_dir`` defaults to a fresh directory."""
    started: list[TotpdProcess] = []

    def start(data_dir: Path | None = None, **settings: str) -> TotpdProcess:
        server = TotpdProcess(data_dir or tmp_path_factory.mktemp("totpd"), **settings)
        server.spawn()
        started.append(server)
        server.wait_listening()
        return server

    yield start

    problems: list[str] = []
    for server in started:
        code = server.stop()
        if code != 0:
            problems.append(f"totpd at {server.address} exited with {code}:\n{server.log}")
        leaked = [s for s in seen_secrets if s and s in server.log]
        if leaked:
            problems.append(f"totpd at {server.address} logged {len(leaked)} secret value(s)")
        errors = [line for line in server.lines if '"level": "ERROR"' in line]
        if errors:
            problems.append(f"totpd at {server.address} logged errors:\n" + "\n".join(errors))
    assert not problems, "\n".join(problems)


@pytest.fixture
def server(start_server: StartServer) -> TotpdProcess:
    """A running server on a fresh data directory."""
    return start_server()


@pytest.fixture
def address(server: TotpdProcess) -> str:
    """The ``host:port`` of a running server."""
    return server.address


@dataclass
class GrpcurlResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> dict[str, Any]:
        assert self.returncode == 0, f"grpcurl failed ({self.returncode}):\n{self.output}"
        value = json.loads(self.stdout)
        assert isinstance(value, dict)
        return value


class Grpcurl:
    """Runs the grpcurl binary found on PATH against a plaintext server."""

    def __init__(self, path: str | None) -> None:
        self._path = path

    def require(self) -> str:
        """The path of grpcurl; the test fails (never skips) when there is none."""
        if self._path is None:
            # Never a skip: a missing client must not turn the black-box suite green.
            pytest.fail(
                "grpcurl is not on PATH. `make test` builds it (`make tools`, which needs Go) "
                "and puts .tools/bin on PATH; to run this suite alone: make tools && "
                "PATH=$PWD/.tools/bin:$PATH .venv/bin/python -m pytest tests/e2e"
            )
        return self._path

    def __call__(
        self,
        address: str,
        *args: str,
        data: Mapping[str, Any] | None = None,
        flags: Sequence[str] = (),
    ) -> GrpcurlResult:
        """``grpcurl -plaintext [flags] [-d data] address args...``"""
        command = [self.require(), "-plaintext", "-connect-timeout", "5", "-max-time", "10"]
        command += flags
        if data is not None:
            command += ["-d", json.dumps(data)]
        command += [address, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=GRPCURL_TIMEOUT)
        return GrpcurlResult(done.returncode, done.stdout, done.stderr)

    def call(self, address: str, method: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Call ``totpd.v1.TotpService/<method>``; it must succeed. Returns the JSON reply."""
        return self(address, f"{SERVICE}/{method}", data=data).json()

    def fail(self, address: str, method: str, data: Mapping[str, Any]) -> GrpcurlResult:
        """Call ``totpd.v1.TotpService/<method>``; it must fail."""
        result = self(address, f"{SERVICE}/{method}", data=data)
        assert result.returncode != 0, f"expected an error, got:\n{result.output}"
        return result


@pytest.fixture(scope="session")
def grpcurl() -> Grpcurl:
    return Grpcurl(shutil.which("grpcurl"))
