"""``soak/run.py`` end to end, for a few seconds: it starts a server and Redis, drives the
mixed load, and writes a report with memory samples and calls by status code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.live_server import server_env

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_three_second_soak_reports_calls_and_memory(tmp_path: Path) -> None:
    env = server_env(tmp_path)  # no TOTPD_* settings of ours leak into the soak's server
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "soak" / "run.py"),
            "--duration",
            "3",
            "--out",
            str(tmp_path / "results"),
            "--concurrency",
            "4",
            "--interval",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "calls by RPC and status code" in result.stdout
    (report,) = (tmp_path / "results").glob("*.json")
    data = json.loads(report.read_text())
    assert data["server_exit_code"] == 0 and data["unexpected"] == {}
    assert data["counts"].get("CreateTotp OK", 0) > 0
    assert len(data["samples"]) >= 3
    assert all(s["server_rss_mib"] > 0 and s["redis_used_memory_mib"] > 0 for s in data["samples"])
    assert data["rpc_log_lines"] == sum(data["counts"].values())
