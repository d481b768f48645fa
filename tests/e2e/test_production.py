"""A production-mode server as docker-compose.yml runs it: a provisioned keys file, a
callers file with a bearer token, reflection off. grpcurl then needs the .proto file and
the token; health stays open for probes."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from google.rpc import error_details_pb2

from tests.e2e.conftest import REPO_ROOT, SERVICE, Grpcurl, StartServer
from tests.e2e.test_deploy_files import compose_health_probe
from tests.e2e.test_lifecycle import assert_one_clear_line, run_totpd
from tests.live_server import TotpdProcess

pytestmark = pytest.mark.e2e

# Without reflection grpcurl reads the protos: ours, and google.rpc's error details (from
# googleapis-common-protos) to show the ErrorInfo of a failed call.
GOOGLEAPIS = Path(error_details_pb2.__file__).parents[2]
PROTO = [
    *("-import-path", str(REPO_ROOT / "protos"), "-proto", "totpd/v1/totp_service.proto"),
    *("-import-path", str(GOOGLEAPIS), "-proto", "google/rpc/error_details.proto"),
]


def write_keys_file(path: Path) -> Path:
    def section(key_id: str) -> dict[str, object]:
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        return {"primary": key_id, "keys": {key_id: key}}

    path.write_text(json.dumps({"encryption": section("k1"), "hashing": section("h1")}))
    path.chmod(0o600)
    return path


def write_callers_file(path: Path, token: str) -> Path:
    digest = hashlib.sha256(token.encode()).hexdigest()
    path.write_text(
        "[callers.web-backend]\n"
        f'token_sha256 = ["{digest}"]\n'
        'rpcs = ["CreateTotp", "ActivateTotp", "VerifyTotp", "GetTotp"]\n'
    )
    return path


@pytest.fixture
def token() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def production(
    start_server: StartServer, tmp_path: Path, token: str, seen_secrets: list[str]
) -> TotpdProcess:
    seen_secrets.append(token)
    return start_server(
        tmp_path / "data",
        ENV="production",
        KEYS_FILE=str(write_keys_file(tmp_path / "keys.json")),
        CALLERS_FILE=str(write_callers_file(tmp_path / "callers.toml", token)),
    )


def call(
    grpcurl: Grpcurl, server: TotpdProcess, method: str, data: dict[str, str], token: str = ""
) -> tuple[int, str]:
    auth = ["-H", f"authorization: Bearer {token}"] if token else []
    result = grpcurl(server.address, f"{SERVICE}/{method}", data=data, flags=PROTO + auth)
    return result.returncode, result.output


def test_production_serves_callers_of_the_callers_file_only(
    grpcurl: Grpcurl, production: TotpdProcess, token: str, seen_secrets: list[str]
) -> None:
    assert "reflection=off" in production.log
    listed = grpcurl(production.address, "list")
    assert listed.returncode != 0  # no reflection: clients bring the proto

    # The health probe of docker-compose.yml needs neither reflection nor credentials.
    probe = compose_health_probe().replace("127.0.0.1:50051", production.address)
    health = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30)
    assert health.returncode == 0, health.stderr

    code, output = call(grpcurl, production, "CreateTotp", {"user_id": "erin"})
    assert code != 0
    assert "Code: Unauthenticated" in output
    assert '"reason": "UNAUTHENTICATED"' in output

    code, output = call(grpcurl, production, "CreateTotp", {"user_id": "erin"}, "not-the-token")
    assert code != 0
    assert '"reason": "UNAUTHENTICATED"' in output

    code, output = call(grpcurl, production, "CreateTotp", {"user_id": "erin"}, token)
    assert code == 0, output
    # From .proto files grpcurl prints lowerCamelCase JSON names (with reflection from this
    # server it prints the proto names).
    created = json.loads(output)
    seen_secrets += [created["secret"], created["otpauthUri"], *created["recoveryCodes"]]
    assert created["totp"]["state"] == "TOTP_STATE_PENDING"

    code, output = call(grpcurl, production, "DeleteTotp", {"user_id": "erin"}, token)
    assert code != 0
    assert "Code: PermissionDenied" in output
    assert '"reason": "PERMISSION_DENIED"' in output


def test_production_without_callers_file_refuses_to_start(tmp_path: Path) -> None:
    keys = write_keys_file(tmp_path / "keys.json")
    done = run_totpd(tmp_path, ENV="production", KEYS_FILE=str(keys))
    assert done.returncode == 1, done.stderr
    assert_one_clear_line(done, "totpd: cannot start:", "TOTPD_CALLERS_FILE")
