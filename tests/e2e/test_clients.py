"""The Go, TypeScript/Node and Java clients, each running its own test suite against one
live server (a real ``python -m totpd`` with its embedded Redis).

`make test` builds the clients first (`make clients`: stubs generated from protos/, deps
from their lock files); here each client's own runner executes its flow test with
TOTPD_ADDRESS pointing at the server. A missing toolchain fails, it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_server import TotpdProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CLIENTS = Path(__file__).resolve().parents[2] / "clients"


@pytest.fixture(scope="module")
def live_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = TotpdProcess(tmp_path_factory.mktemp("clients-server"))
    address = server.start()
    yield address
    assert server.stop() == 0, server.log


def run_client(tool: str, args: list[str], cwd: Path, address: str) -> str:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: the {cwd.name} client cannot be tested")
    env = {**os.environ, "TOTPD_ADDRESS": address, "CI": "true", "NO_COLOR": "1"}
    done = subprocess.run(
        [tool, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=850
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{tool} {' '.join(args)} failed in {cwd}:\n{output}"
    return output


def test_go_client(live_address: str) -> None:
    output = run_client("go", ["test", "-count=1", "-v", "./..."], CLIENTS / "go", live_address)
    assert "--- PASS" in output and "--- FAIL" not in output


def test_node_client(live_address: str) -> None:
    output = run_client("npm", ["test"], CLIENTS / "node", live_address)
    assert "# fail 0" in output


def test_java_client(live_address: str) -> None:
    output = run_client(
        "mvn", ["-B", "-ntp", "-Dstyle.color=never", "test"], CLIENTS / "java", live_address
    )
    assert "Tests run:" in output and "BUILD SUCCESS" in output
