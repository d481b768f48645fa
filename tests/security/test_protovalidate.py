"""The proto's buf.validate rules, enforced by the server in one interceptor before any
handler runs: every language's stubs carry the same rules."""

from __future__ import annotations

import grpc
import pytest
from buf.validate import validate_pb2
from google.protobuf import duration_pb2

from tests.helpers import error_details
from totpd.api.server import RPC_NAMES
from totpd.v1 import totp_service_pb2 as pb

from .conftest import StartServer, redis_snapshot
from .rpcs import method, requests

BAD_CODES = [
    "١٢٣٤٥٦",  # Arabic-Indic digits: str.isdigit() says yes
    "１２３４５６",  # fullwidth digits
    "𝟏𝟐𝟑𝟒𝟓𝟔",  # mathematical bold digits
    "12345",
    "1234567",
    "123456789",
    " 123456",
    "123456\n",
    "+123456",
    "-12345",
    "12 456",
    "12345a",
    "",
]
BAD_USER_IDS = ["", "a" * 257, "é" * 129, "a\x00b", "a\nb", "\u202eevil", "a\u00a0b", "\x7f"]


def test_every_request_field_the_service_reads_has_rules() -> None:
    """The rules live in the descriptors, so the Go, Node and Java stubs carry them too."""
    for rpc in RPC_NAMES:
        descriptor = getattr(pb, f"{rpc}Request").DESCRIPTOR
        for field in descriptor.fields:
            options = field.GetOptions()
            assert options.HasExtension(validate_pb2.field), f"{descriptor.name}.{field.name}"


async def _violations(start_server: StartServer, rpc: str, request) -> dict[str, str]:
    running = await start_server()
    before = await redis_snapshot(running.redis)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await method(running.stub(), rpc)(request, timeout=5)
    details = error_details(raised.value)
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert (details.reason, details.domain) == ("INVALID_REQUEST", "totpd")
    assert await redis_snapshot(running.redis) == before
    return details.field_violations


@pytest.mark.parametrize("code", BAD_CODES)
@pytest.mark.parametrize("rpc", ["VerifyTotp", "ActivateTotp"])
async def test_codes_are_ascii_digits_only(start_server: StartServer, rpc: str, code: str):
    request = requests()[rpc]
    request.code = code
    violations = await _violations(start_server, rpc, request)
    assert set(violations) == {"code"}
    # Rejected by the proto rule (the interceptor), not by the handler's own checks.
    assert violations["code"] == "must be exactly 6 or 8 ASCII digits"


@pytest.mark.parametrize("user_id", BAD_USER_IDS)
@pytest.mark.parametrize("rpc", RPC_NAMES)
async def test_user_ids_are_printable_and_bounded(start_server: StartServer, rpc, user_id):
    request = requests()[rpc]
    request.user_id = user_id
    assert "user_id" in await _violations(start_server, rpc, request)


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"algorithm": 7}, "algorithm"),
        ({"qr_code_format": -1}, "qr_code_format"),
        ({"digits": 7}, "digits"),
        ({"expiration_minutes": 4}, "expiration_minutes"),
        ({"expiration_minutes": 1441}, "expiration_minutes"),
        ({"qr_code_size": 1025}, "qr_code_size"),
        ({"period": duration_pb2.Duration(seconds=45)}, "period"),
        ({"issuer": "a:b"}, "issuer"),
        ({"issuer": "i" * 65}, "issuer"),
        ({"account_name": "x" * 257}, "account_name"),
        ({"request_id": "r" * 65}, "request_id"),
    ],
)
async def test_create_rules(start_server: StartServer, fields: dict, bad: str) -> None:
    request = pb.CreateTotpRequest(user_id="alice", **fields)
    assert set(await _violations(start_server, "CreateTotp", request)) == {bad}


async def test_every_violation_is_reported_at_once(start_server: StartServer) -> None:
    request = pb.CreateTotpRequest(user_id="", algorithm=9, digits=9, qr_code_size=5)
    violations = await _violations(start_server, "CreateTotp", request)
    assert set(violations) == {"user_id", "algorithm", "digits", "qr_code_size"}


async def test_oversized_recovery_code_and_bad_totp_ids(start_server: StartServer) -> None:
    request = pb.UseRecoveryCodeRequest(user_id="a", recovery_code="x" * 65)
    assert set(await _violations(start_server, "UseRecoveryCode", request)) == {"recovery_code"}
    request = pb.DeleteTotpRequest(user_id="a", totp_id="../../etc")
    assert set(await _violations(start_server, "DeleteTotp", request)) == {"totp_id"}
    request = pb.ActivateTotpRequest(user_id="a", code="123456")
    assert set(await _violations(start_server, "ActivateTotp", request)) == {"totp_id"}
