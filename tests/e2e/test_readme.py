"""The README's grpcurl session, run verbatim against a live server.

The session is the first ```bash block after the heading that names it. Lines starting
with ``#>`` show the output of the commands above them; every such line must match a line
of that output, in order (``…`` stands for anything; runs of spaces and tabs count as one).
A command whose documented output starts with ``ERROR:`` must fail, every other must
succeed. The only thing the test chooses is the address: the session reads ``$TOTPD``.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO_ROOT, Grpcurl

pytestmark = pytest.mark.e2e

README = REPO_ROOT / "README.md"
_HEADING = re.compile(r"^#+ .*grpcurl session", re.IGNORECASE | re.MULTILINE)
_MARK = "@@readme-session"


@dataclass
class Step:
    command: str
    expected: list[str]


def session_block(readme: str) -> str:
    heading = _HEADING.search(readme)
    assert heading, "README.md has no 'grpcurl session' heading"
    start = readme.index("```bash\n", heading.end()) + len("```bash\n")
    return readme[start : readme.index("\n```", start)]


def parse_steps(block: str) -> list[Step]:
    steps: list[Step] = []
    command: list[str] = []
    expected: list[str] = []
    for line in block.splitlines():
        if line.startswith("#>"):
            expected.append(line[2:])
            continue
        if expected:  # a command after documented output starts the next step
            steps.append(Step("\n".join(command), expected))
            command, expected = [], []
        command.append(line)
    if command or expected:
        steps.append(Step("\n".join(command), expected))
    return steps


def _normalize(line: str) -> str:
    return re.sub(r"[ \t]+", " ", line).strip()


def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in _normalize(expected).split("…")))


def assert_output_matches(step: Step, output: str) -> None:
    lines = [_normalize(line) for line in output.splitlines()]
    position = 0
    for expected in step.expected:
        pattern = _pattern(expected)
        while position < len(lines) and not pattern.search(lines[position]):
            position += 1
        assert position < len(lines), (
            f"README step\n{step.command}\ndocuments the line {expected.strip()!r}, "
            f"which is not in its output (in this order):\n{output}"
        )
        position += 1


def test_readme_parser_reads_steps_and_wildcards() -> None:
    steps = parse_steps("A=1\necho x\n#> x\n\n# note\nfalse\n#> ERROR: …\n")
    assert steps == [Step("A=1\necho x", [" x"]), Step("\n# note\nfalse", [" ERROR: …"])]
    assert _pattern('  "totp_id": "totp-…",').search('"totp_id": "totp-abc",')
    assert not _pattern('"state": "TOTP_STATE_ACTIVE"').search('"state": "TOTP_STATE_PENDING"')


def test_readme_grpcurl_session_runs_as_documented(
    grpcurl: Grpcurl, address: str, seen_secrets: list[str], tmp_path: Path
) -> None:
    grpcurl.require()  # the session runs the grpcurl on PATH
    block = session_block(README.read_text())
    for needed in ("list", "CreateTotp", "ActivateTotp", "VerifyTotp", "GetTotp", "ERROR:"):
        assert needed in block, f"the README session should show {needed}"
    steps = parse_steps(block)

    # Markers between the steps, and a trap that reports any failed command, let the
    # output be split by step; the commands themselves run unchanged, in one shell.
    script = [f"trap 'echo \"{_MARK} failed: $?\"' ERR"]
    for i, step in enumerate(steps):
        script += [f"echo '{_MARK} step {i}'", step.command]
    script.append(f"echo '{_MARK} end'")
    path = tmp_path / "session.sh"
    path.write_text("\n".join(script) + "\n")
    done = subprocess.run(
        ["bash", str(path)],
        cwd=REPO_ROOT,
        env={**os.environ, "TOTPD": address},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    output = done.stdout
    # Whatever secrets the session printed, the server must not have logged them.
    seen_secrets += re.findall(r'"secret": "([A-Z2-7]+)"', output)
    seen_secrets += re.findall(r'"otpauth_uri": "([^"]+)"', output)
    seen_secrets += re.findall(r'^\s*"([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})",?$', output, re.M)
    assert done.returncode == 0, output

    segments = re.split(rf"^{_MARK} step (\d+)\n", output, flags=re.MULTILINE)
    by_step = {int(segments[i]): segments[i + 1] for i in range(1, len(segments), 2)}
    assert sorted(by_step) == list(range(len(steps))), output
    for i, step in enumerate(steps):
        segment = by_step[i]
        failed = f"{_MARK} failed:" in segment
        should_fail = any(_normalize(e).startswith("ERROR:") for e in step.expected)
        assert failed == should_fail, (
            f"README step\n{step.command}\n{'should fail' if should_fail else 'failed'}:\n{segment}"
        )
        assert_output_matches(step, segment)
