"""Metrics and per-RPC log lines of a real ``python -m totpd``: /metrics scraped over HTTP
after a known sequence of calls, and the server's stderr parsed as JSON lines."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.helpers import totp_code
from tests.live_server import TotpdProcess, metrics_url, scrape, value
from totpd.callers import hash_token
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

TOKEN = "obs-token-7Hq2Lm9Xz4Rk1Vb8Nc3Jt6Yw0Ps5Fd2"
USER = "obs-user-5f1c9e"  # must appear in no metric and no log line
CALLERS = f"""
[callers.web]
token_sha256 = ["{hash_token(TOKEN)}"]
rpcs = ["CreateTotp", "ActivateTotp", "VerifyTotp", "UseRecoveryCode", "GetTotp"]
"""


def rpc_lines(server: TotpdProcess) -> list[dict[str, Any]]:
    entries = []
    for line in server.lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("logger") == "totpd.rpc":
            entries.append(entry)
    return entries


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TotpdProcess]:
    callers = tmp_path / "callers.toml"
    callers.write_text(CALLERS)
    process = TotpdProcess(
        tmp_path / "data", METRICS_LISTEN="127.0.0.1:0", CALLERS_FILE=str(callers)
    )
    process.start()
    yield process
    assert process.stop() == 0, process.log


AUTH = (("authorization", f"Bearer {TOKEN}"),)


async def _calls(address: str) -> list[str]:
    """Nine calls with known outcomes; returns the secret values the server handed out."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TotpServiceStub(channel)
        created = await stub.CreateTotp(
            pb.CreateTotpRequest(user_id=USER, account_name="obs@example.com"),
            metadata=(*AUTH, ("x-request-id", "obs-req-1")),
        )
        now = time.time()
        await stub.ActivateTotp(
            pb.ActivateTotpRequest(
                user_id=USER, totp_id=created.totp_id, code=totp_code(created.secret, now)
            ),
            metadata=AUTH,
        )
        next_code = totp_code(created.secret, now + 30)  # a later step: not yet used
        await stub.VerifyTotp(pb.VerifyTotpRequest(user_id=USER, code=next_code), metadata=AUTH)
        for code in (next_code, "000000" if next_code != "000000" else "111111"):
            with pytest.raises(grpc.aio.AioRpcError) as replayed_or_wrong:
                await stub.VerifyTotp(pb.VerifyTotpRequest(user_id=USER, code=code), metadata=AUTH)
            assert replayed_or_wrong.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        await stub.UseRecoveryCode(
            pb.UseRecoveryCodeRequest(user_id=USER, recovery_code=created.recovery_codes[0]),
            metadata=AUTH,
        )
        await stub.GetTotp(pb.GetTotpRequest(user_id=USER), metadata=AUTH)
        with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
            await stub.GetTotp(pb.GetTotpRequest(user_id=USER))
        assert unauthenticated.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.DeleteTotp(pb.DeleteTotpRequest(user_id=USER), metadata=AUTH)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
        return [
            created.secret,
            created.otpauth_uri,
            created.totp_id,
            next_code,
            *created.recovery_codes,
        ]


EXPECTED_RPCS = {
    ("CreateTotp", "OK"): 1,
    ("ActivateTotp", "OK"): 1,
    ("VerifyTotp", "OK"): 1,
    ("VerifyTotp", "INVALID_ARGUMENT"): 2,
    ("UseRecoveryCode", "OK"): 1,
    ("GetTotp", "OK"): 1,
    ("GetTotp", "UNAUTHENTICATED"): 1,
    ("DeleteTotp", "PERMISSION_DENIED"): 1,
}


async def test_metrics_count_rpcs_checks_enrollments_and_store_calls(
    server: TotpdProcess,
) -> None:
    secrets = await _calls(server.address)
    text, samples = scrape(metrics_url(server))

    for (method, code), count in EXPECTED_RPCS.items():
        assert value(samples, "totpd_rpcs_total", method=method, code=code) == count
        histogram = "totpd_rpc_duration_seconds_count"
        assert value(samples, histogram, method=method, code=code) == count
        inf = value(
            samples, "totpd_rpc_duration_seconds_bucket", method=method, code=code, le="+Inf"
        )
        assert inf == count
    verify = {"rpc": "VerifyTotp"}
    assert value(samples, "totpd_checks_total", **verify, outcome="accepted") == 1
    assert value(samples, "totpd_checks_total", **verify, outcome="replayed") == 1
    assert value(samples, "totpd_checks_total", **verify, outcome="rejected") == 1
    assert value(samples, "totpd_checks_total", rpc="UseRecoveryCode", outcome="accepted") == 1
    assert value(samples, "totpd_enrollments_created_total") == 1
    assert value(samples, "totpd_activations_total", outcome="activated") == 1
    store_calls = "totpd_store_operation_duration_seconds_count"
    assert value(samples, store_calls, operation="create_pending", result="ok") == 1
    assert value(samples, store_calls, operation="check_code", result="ok") == 3
    assert value(samples, store_calls, operation="use_recovery_code", result="ok") == 1
    assert not any(name == "totpd_store_errors_total" for name, _ in samples)

    # Nothing about any user: no user id, TOTP id, secret, URI, code or token.
    for secret in [USER, TOKEN, *secrets]:
        assert secret not in text
    # Only the fixed label names.
    labels = {name for _, labelset in samples for name, _ in labelset}
    assert labels <= {
        "method",
        "code",
        "le",
        "rpc",
        "outcome",
        "kind",
        "operation",
        "result",
        "reason",
    }


async def test_one_json_log_line_per_rpc_without_secrets(server: TotpdProcess) -> None:
    secrets = await _calls(server.address)
    calls = sum(EXPECTED_RPCS.values())
    server.wait_for_lines('"logger": "totpd.rpc"', calls)
    lines = rpc_lines(server)
    assert len(lines) == calls
    seen = {}
    for entry in lines:
        assert set(entry) == {
            "time",
            "level",
            "logger",
            "message",
            "method",
            "code",
            "duration_ms",
            "request_id",
            "caller",
        }
        assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", entry["request_id"])
        seen[(entry["method"], entry["code"])] = seen.get((entry["method"], entry["code"]), 0) + 1
        # The identity of calls the auth interceptor accepted; it logs its own rejections.
        accepted = entry["code"] not in ("UNAUTHENTICATED", "PERMISSION_DENIED")
        assert entry["caller"] == ("web" if accepted else "")
    assert seen == EXPECTED_RPCS
    assert lines[0]["method"] == "CreateTotp" and lines[0]["request_id"] == "obs-req-1"
    assert len({entry["request_id"] for entry in lines}) == calls  # generated ones differ
    for secret in [USER, TOKEN, *secrets]:
        assert secret not in server.log


async def test_request_id_that_is_not_a_plain_token_is_replaced(server: TotpdProcess) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.TotpServiceStub(channel)
        bogus = "drop table; " + "x" * 100
        await stub.GetTotp(
            pb.GetTotpRequest(user_id=USER), metadata=(*AUTH, ("x-request-id", bogus))
        )
    server.wait_for_lines('"logger": "totpd.rpc"')
    (entry,) = rpc_lines(server)
    assert re.fullmatch(r"[0-9a-f]{16}", entry["request_id"])
    assert "drop table" not in server.log


def test_an_empty_metrics_listen_serves_no_metrics(tmp_path: Path) -> None:
    process = TotpdProcess(tmp_path, METRICS_LISTEN="")
    process.start()
    try:
        assert "totpd metrics on" not in process.log
    finally:
        assert process.stop() == 0


async def test_workers_share_one_metrics_endpoint_served_by_the_parent(tmp_path: Path) -> None:
    process = TotpdProcess(tmp_path, METRICS_LISTEN="127.0.0.1:0", WORKERS="2")
    process.start()
    try:
        url = metrics_url(process)
        process.wait_for_lines("totpd listening on", 2)
        creates = 12
        for index in range(creates):  # a channel each: new connections spread over workers
            async with grpc.aio.insecure_channel(process.address) as channel:
                stub = pb_grpc.TotpServiceStub(channel)
                await stub.CreateTotp(pb.CreateTotpRequest(user_id=f"{USER}-{index}"))
        _, samples = scrape(url)
        assert value(samples, "totpd_rpcs_total", method="CreateTotp", code="OK") == creates
        assert value(samples, "totpd_enrollments_created_total") == creates
        files = list((tmp_path / "metrics").glob("*.db"))
        assert files, "multiprocess mode writes its values under <data dir>/metrics"
    finally:
        assert process.stop() == 0, process.log
