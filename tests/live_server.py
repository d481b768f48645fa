"""A real ``python -m totpd`` as a child process (with its embedded redis-server), for
black-box tests in any suite.

A server is ready when it logs ``totpd listening on <host>:<port>``: a reader thread hands
each stderr line to the test thread, which waits for that line up to a deadline (no sleeps).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
_LISTENING = re.compile(r"^totpd listening on (\S+:\d+) ")
_METRICS_AT = re.compile(r"^totpd metrics on (http://\S+/metrics)$")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a server: ours without any TOTPD_* variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOTPD_")}
    # Free ports: several servers may run at once (the metrics one is logged like gRPC's).
    env.update(
        TOTPD_LISTEN="127.0.0.1:0", TOTPD_METRICS_LISTEN="127.0.0.1:0", TOTPD_DATA_DIR=str(data_dir)
    )
    env.update({f"TOTPD_{name}": value for name, value in settings.items()})
    return env


def log_message(line: str) -> str:
    """The message of a JSON log line, or the line itself if it is not one."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    return str(entry.get("message", line)) if isinstance(entry, dict) else line


class TotpdProcess:
    """One ``python -m totpd`` child process and everything it wrote to stderr."""

    def __init__(self, data_dir: Path, **settings: str) -> None:
        self.data_dir = data_dir
        self.env = server_env(data_dir, **settings)
        self.lines: list[str] = []
        self.address = ""
        self.returncode: int | None = None
        self.listening_at = 0.0  # time.monotonic() when the 'listening' line was read
        self._lines: queue.Queue[tuple[str, float] | None] = queue.Queue()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> str:
        """Start the server and return its address once it logs that it is listening."""
        self.spawn()
        return self.wait_listening()

    def spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "totpd"],
            env=self.env,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self._process,), daemon=True)
        self._reader.start()

    def wait_listening(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                item = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if item is None:  # stderr closed: the process has ended
                self.stop()
                pytest.fail(f"totpd exited with {self.returncode} before listening:\n{self.log}")
            line, seen_at = item
            match = _LISTENING.match(log_message(line))
            if match:
                self.address = match.group(1)
                self.listening_at = seen_at
                return self.address
        self.stop()
        pytest.fail(f"totpd did not log 'listening' within {START_TIMEOUT}s:\n{self.log}")

    def wait_for_lines(self, text: str, count: int = 1, timeout: float = START_TIMEOUT) -> None:
        """Wait until ``count`` stderr lines contain ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(text in line for line in list(self.lines)) >= count:
                return
            time.sleep(0.02)  # polling a condition with a deadline, not a fixed wait
        pytest.fail(f"totpd did not log {text!r} {count} time(s) in {timeout}s:\n{self.log}")

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.lines.append(line.rstrip("\n"))
            self._lines.put((line, time.monotonic()))
        self._lines.put(None)

    def send_signal(self, sig: signal.Signals) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code once the process has ended, or None if it runs past ``timeout``."""
        assert self._process is not None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Signal the server, wait for it to exit and return its exit code; SIGKILL (exit
        code -9) if it runs past ``timeout``. Idempotent."""
        process = self._process
        if process is None:
            assert self.returncode is not None, "never started"
            return self.returncode
        self.send_signal(sig)
        code = self.wait(timeout)
        if code is None:
            process.kill()
            code = process.wait()
        self.returncode = code
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()
        self._process = None
        return code

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


# -- its /metrics -----------------------------------------------------------------------


def metrics_url(server: TotpdProcess) -> str:
    server.wait_for_lines("totpd metrics on ")
    for line in server.lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        match = _METRICS_AT.match(str(entry.get("message", "")))
        if match:
            return match.group(1)
    raise AssertionError("no 'totpd metrics on' line")


def scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text: str = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)
