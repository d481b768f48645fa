"""docker-compose.yml, the Dockerfile and the README's reference tables, checked as text
(no Docker engine or YAML parser needed): the values that matter, the Compose health
probe run against a live server, and no drift from the settings, reasons and events in
the code."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.e2e.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

COMPOSE = (REPO_ROOT / "docker-compose.yml").read_text()
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
README = (REPO_ROOT / "README.md").read_text()
SERVER = REPO_ROOT / "server" / "totpd"


def compose_service(name: str) -> str:
    """The text of one service block of docker-compose.yml."""
    match = re.search(rf"^  {name}:\n((?:    .*\n|\n)*)", COMPOSE, re.MULTILINE)
    assert match, f"no service {name!r} in docker-compose.yml"
    return match.group(1)


def test_compose_runs_totpd_in_production_against_the_redis_service() -> None:
    totpd = compose_service("totpd")
    assert "build: ." in totpd
    for setting in (
        "TOTPD_ENV: production",
        "TOTPD_LISTEN: 0.0.0.0:50051",
        "TOTPD_REDIS_URL: redis://redis:6379/0",
        "TOTPD_KEYS_FILE: /run/secrets/totpd_keys",
        "TOTPD_CALLERS_FILE: /run/secrets/totpd_callers",
    ):
        assert setting in totpd
    assert re.search(r"secrets:\n\s+- totpd_keys\n\s+- totpd_callers\n", totpd)
    for secret in ("totpd_keys", "totpd_callers"):
        assert re.search(rf"^  {secret}:\n    file: \./secrets/\S+$", COMPOSE, re.MULTILINE)
    assert re.search(r'- "(127\.0\.0\.1:)?50051:50051"', totpd)
    assert re.search(r"redis:\n\s+condition: service_healthy", totpd)
    assert "healthcheck:" in totpd


def test_compose_redis_is_persistent_and_never_evicts() -> None:
    redis = compose_service("redis")
    assert re.search(r"^    image: redis:7$", redis, re.MULTILINE)
    assert '"--appendonly", "yes"' in redis
    assert '"--maxmemory-policy", "noeviction"' in redis
    assert "- redis-data:/data" in redis
    assert re.search(r"^volumes:\n  redis-data:", COMPOSE, re.MULTILINE)
    assert "redis-cli ping" in redis


def compose_health_probe() -> str:
    """The Python one-liner of the totpd healthcheck (a YAML folded scalar)."""
    match = re.search(r"- -c\n        - >-\n((?:          .*\n)+)", compose_service("totpd"))
    assert match, "the totpd healthcheck should be CMD python -c <folded one-liner>"
    return " ".join(line.strip() for line in match.group(1).splitlines())


def test_compose_health_probe_passes_against_a_live_server(address: str) -> None:
    probe = compose_health_probe().replace("127.0.0.1:50051", address)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_dockerfile_builds_a_pinned_non_root_image() -> None:
    assert re.search(r"^FROM python:3\.11-slim AS stubs$", DOCKERFILE, re.MULTILINE)
    assert re.search(r"^FROM python:3\.11-slim$", DOCKERFILE, re.MULTILINE)
    assert "--require-hashes --no-deps -r requirements/runtime.lock" in DOCKERFILE
    assert "python -m grpc_tools.protoc" in DOCKERFILE
    assert re.search(r"pip install .*--no-deps .*\./clients/python \.", DOCKERFILE)
    user = re.search(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert user and not user.group(1).startswith(("root", "0:", "0\n")) and user.group(1) != "0"
    assert DOCKERFILE.rstrip().endswith('CMD ["python", "-m", "totpd"]')
    # The code generators come from dev.lock: every one named must be pinned there.
    names = re.search(r"\$1 ~ /\^\(([^)]+)\)==/", DOCKERFILE)
    assert names
    dev_lock = (REPO_ROOT / "requirements" / "dev.lock").read_text()
    for name in names.group(1).split("|"):
        assert re.search(rf"^{re.escape(name)}==\S+ \\$", dev_lock, re.MULTILINE), name


def test_readme_configuration_table_lists_every_setting() -> None:
    in_code = set(re.findall(r'get\(\s*"([A-Z_]+)"', (SERVER / "config.py").read_text()))
    assert in_code, "found no settings in config.py"
    in_table = set(re.findall(r"^\| `TOTPD_([A-Z_]+)` \|", README, re.MULTILINE))
    assert in_table == in_code


def test_readme_lists_every_error_reason_and_event_type() -> None:
    reasons = re.findall(
        r'StatusCode\.([A-Z_]+), "([A-Z_]+)"\)', (SERVER / "api/status.py").read_text()
    )
    assert reasons, "found no reasons in status.py"
    for code, reason in reasons:
        assert f"| `{code}` | `{reason}` |" in README
    event_types = re.findall(
        r'^    [A-Z_]+ = "([a-z_]+\.[a-z_]+)"', (SERVER / "model.py").read_text(), re.MULTILINE
    )
    assert event_types, "found no event types in model.py"
    for event_type in event_types:
        assert f"| `{event_type}` |" in README
