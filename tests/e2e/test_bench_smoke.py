"""A smoke run of the load benchmark, bench/run.py: one worker, one round, one second per
timed run and a few users, so that the harness itself (its redis-server and server, ghz,
the seeding, the JSON and the PNG) keeps working. The figures are not checked, only that
every scenario ran and took the path it is meant to take.

The harness runs the ghz of .tools/bin, which `make test` installs: without it the test
fails, it never skips.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

GHZ = REPO_ROOT / ".tools" / "bin" / "ghz"
USERS = 40
CONCURRENCY = 64  # bench/run.py's default -c
SCENARIOS = ("baseline", "create", "activate", "verify", "verify_replay")
BENCH_TIMEOUT_S = 120  # the run takes ~5 s; the rest is for a machine busy with other jobs
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _interrupt(bench: subprocess.Popen[str]) -> None:
    """Ctrl-C for the harness, whose cleanup stops its server and redis-server; then
    SIGKILL for its process group (its own session) if it has not exited."""
    bench.send_signal(signal.SIGINT)
    try:
        bench.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)
        bench.wait()


# Above the run's own deadline, so that a hung run is interrupted (and cleans up) first.
@pytest.mark.timeout(BENCH_TIMEOUT_S + 60)
def test_bench_smoke_run(tmp_path: Path) -> None:
    if not GHZ.exists():
        # Never a skip: a missing load generator must not turn this test green.
        pytest.fail(
            f"ghz is not installed at {GHZ}. `make test` installs it; to run this test "
            'alone: make "$PWD/.tools/bin/ghz" (needs Go) && '
            "PATH=$PWD/.tools/bin:$PATH .venv/bin/pytest tests/e2e/test_bench_smoke.py"
        )
    command = [sys.executable, "bench/run.py", "--workers", "1", "--rounds", "1"]
    command += ["--duration", "1", "--pair", "0.5", "--warmup", "0.5", "--users", str(USERS)]
    command += ["--out", str(tmp_path), "--label", "smoke"]
    bench = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = bench.communicate(timeout=BENCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _interrupt(bench)
        output, _ = bench.communicate()
        pytest.fail(f"bench/run.py did not finish in {BENCH_TIMEOUT_S} s:\n{output[-4000:]}")
    finally:
        if bench.poll() is None:  # e.g. pytest's own timeout
            _interrupt(bench)
    assert bench.returncode == 0, f"bench/run.py exited with {bench.returncode}:\n{output}"

    written = sorted(tmp_path.glob("*-smoke.json"))
    assert len(written) == 1, f"expected one *-smoke.json in {tmp_path}, got {written}"
    results = json.loads(written[0].read_text())["results"]
    result = results[0]
    assert result["workers"] == 1
    for name in SCENARIOS:
        assert result["median"][name]["rps"] > 0, (name, result["median"].get(name))

    runs = result["rounds"][0]
    # Each fixed-size run took the path it is meant to, for every user.
    assert runs["activate"]["statuses"] == {"OK": USERS}, runs["activate"]
    assert runs["verify"]["statuses"] == {"OK": USERS}, runs["verify"]
    assert runs["verify_replay"]["statuses"] == {"InvalidArgument": USERS}, runs["verify_replay"]
    # The timed runs: the calls ghz cut off when the time was up are counted apart (at
    # most one per call in flight), never as the server's Unavailable.
    for name in ("baseline", "create"):
        assert "Unavailable" not in runs[name]["statuses"], runs[name]
        assert 0 <= runs[name]["cut_at_end"] <= CONCURRENCY, runs[name]
    # Each RPC's own baseline, run right before it, is the one its ratios are to.
    for name in ("create", "activate", "verify"):
        paired = runs[f"{name}@baseline"]
        assert set(paired["statuses"]) == {"OK"} and paired["rps"] > 0, paired
        ratio = result["median"][name]["rps_ratio"]
        assert ratio == pytest.approx(runs[name]["rps"] / paired["rps"]), (name, ratio)
    verify_paired = runs["verify@baseline"]["rps"]
    assert result["median"]["verify_replay"]["rps_ratio"] == pytest.approx(
        runs["verify_replay"]["rps"] / verify_paired
    )

    active = result["redis_memory_per_enrollment"]["active"]
    assert active["users_sampled"] == USERS, active
    assert 0 < active["mean_bytes"] <= 1024, active

    chart = written[0].with_suffix(".png")
    assert chart.read_bytes().startswith(PNG_SIGNATURE), chart
