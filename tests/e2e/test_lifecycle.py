"""The server process itself: data surviving a restart, graceful signals, and startup errors
that exit with a clear one-line message instead of a traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Grpcurl, StartServer
from tests.e2e.steps import activate, create, next_code
from tests.live_server import TotpdProcess, server_env

pytestmark = pytest.mark.e2e


def test_an_active_totp_survives_a_restart(
    grpcurl: Grpcurl, start_server: StartServer, tmp_path: Path, seen_secrets: list[str]
) -> None:
    first = start_server(tmp_path)
    created = create(grpcurl, first.address, "dave", seen_secrets)
    activate(grpcurl, first.address, created)
    assert first.stop() == 0

    second = start_server(tmp_path)  # same data dir: same AOF and keys file
    status = grpcurl.call(second.address, "GetTotp", {"user_id": "dave"})
    assert status["active_totp"]["totp_id"] == created["totp_id"]
    assert status["active_totp"]["state"] == "TOTP_STATE_ACTIVE"
    assert status["recovery_codes_remaining"] == 10
    # The secret still decrypts: the restarted server accepts the next code.
    verified = grpcurl.call(
        second.address, "VerifyTotp", {"user_id": "dave", "code": next_code(created["secret"])}
    )
    assert verified["totp_id"] == created["totp_id"]


def test_sigint_stops_the_server_gracefully(start_server: StartServer) -> None:
    server = start_server()
    assert server.stop(signal.SIGINT) == 0
    assert any('"message": "stopped"' in line for line in server.lines), server.log


# The server pings Redis for its health status every second, the first time about a second
# after it logs that it listens. Each round SIGTERMs a few servers right around that ping;
# rounds go on until one server hangs or the budget is spent (a hang takes ~25% of tries).
PROBE_INTERVAL = 1.0
SIGTERM_OFFSETS = [PROBE_INTERVAL - 0.005 + i * 0.001 for i in range(5)]
ROUNDS = 5
EXIT_WITHIN = 2.0


def sigterm_near_the_first_probe(tmp_path_factory: pytest.TempPathFactory) -> list[int | None]:
    """Start servers, SIGTERM each at its offset, and return their exit codes (None: hung)."""
    servers = [TotpdProcess(tmp_path_factory.mktemp("probe")) for _ in SIGTERM_OFFSETS]
    timers: list[threading.Timer] = []
    try:
        for server in servers:
            server.spawn()
        for server, offset in zip(servers, SIGTERM_OFFSETS, strict=True):
            server.wait_listening()
            delay = max(0.0, server.listening_at + offset - time.monotonic())
            timers.append(threading.Timer(delay, server.send_signal, args=(signal.SIGTERM,)))
            timers[-1].start()
        for timer in timers:
            timer.join()
        deadline = time.monotonic() + EXIT_WITHIN
        return [server.wait(max(0.0, deadline - time.monotonic())) for server in servers]
    finally:
        for timer in timers:
            timer.cancel()
        for server in servers:
            server.stop(signal.SIGKILL, timeout=5)


def test_sigterm_during_a_health_probe_stops_the_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    codes: list[int | None] = []
    for _ in range(ROUNDS):
        codes += sigterm_near_the_first_probe(tmp_path_factory)
        if None in codes:
            break
    hung = codes.count(None)
    assert hung == 0, f"{hung} of {len(codes)} servers still ran {EXIT_WITHIN}s after SIGTERM"
    assert codes == [0] * len(codes)


def run_totpd(data_dir: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m totpd`` expecting it to exit by itself (a startup error)."""
    return subprocess.run(
        [sys.executable, "-m", "totpd"],
        env=server_env(data_dir, **settings),
        cwd=data_dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
    )


def assert_one_clear_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for text in expected:
        assert text in lines[0], done.stderr


def test_production_without_keys_file_exits_1(tmp_path: Path) -> None:
    done = run_totpd(tmp_path, ENV="production")
    assert done.returncode == 1, done.stderr
    assert_one_clear_line(done, "totpd: cannot start:", "keys file", str(tmp_path / "keys.json"))
    assert not (tmp_path / "keys.json").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("VERIFY_WINDOW", "9"), ("LOG_LEVEL", "verbose"), ("LISTEN", "nowhere"), ("ENV", "prod")],
)
def test_a_malformed_setting_exits_2_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    done = run_totpd(tmp_path, **{variable: value})
    assert done.returncode == 2, done.stderr
    assert_one_clear_line(done, "totpd: configuration error:", f"TOTPD_{variable}")


def test_malformed_redis_url_exits_2_naming_the_variable(tmp_path: Path) -> None:
    done = run_totpd(tmp_path, REDIS_URL="localhost:6379")
    assert done.returncode == 2, done.stderr
    assert_one_clear_line(done, "totpd: configuration error:", "TOTPD_REDIS_URL")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other process is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_listen_address_in_use_exits_1(tmp_path: Path, busy_port: int) -> None:
    done = run_totpd(tmp_path, LISTEN=f"127.0.0.1:{busy_port}")
    assert done.returncode == 1, done.stderr
    # JSON log lines (embedded Redis started) come first; the last line says why it stopped.
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("totpd: cannot start:"), done.stderr
    assert f"127.0.0.1:{busy_port}" in last
