"""grpcurl against a live ``python -m totpd``: reflection, health, the enrollment flow and
the error details clients branch on."""

from __future__ import annotations

import base64
import re

import pytest

from tests.e2e.conftest import SERVICE, Grpcurl
from tests.e2e.steps import activate, create, next_code

pytestmark = pytest.mark.e2e

RPCS = (
    "CreateTotp",
    "ActivateTotp",
    "VerifyTotp",
    "UseRecoveryCode",
    "RegenerateRecoveryCodes",
    "GetTotp",
    "DeleteTotp",
)


def test_reflection_lists_and_describes_the_service(grpcurl: Grpcurl, address: str) -> None:
    listed = grpcurl(address, "list")
    assert listed.returncode == 0, listed.output
    assert set(listed.stdout.split()) >= {SERVICE, "grpc.health.v1.Health"}

    described = grpcurl(address, "describe", SERVICE)
    assert described.returncode == 0, described.output
    assert f"{SERVICE} is a service:" in described.stdout
    for rpc in RPCS:
        assert f"rpc {rpc} ( .totpd.v1.{rpc}Request ) returns ( .totpd.v1.{rpc}Response )" in (
            described.stdout
        )


@pytest.mark.parametrize("service", ["", SERVICE])
def test_health_check_says_serving(grpcurl: Grpcurl, address: str, service: str) -> None:
    reply = grpcurl(address, "grpc.health.v1.Health/Check", data={"service": service}).json()
    assert reply == {"status": "SERVING"}


def test_create_activate_verify(grpcurl: Grpcurl, address: str, seen_secrets: list[str]) -> None:
    created = create(grpcurl, address, "alice", seen_secrets)

    assert re.fullmatch(r"totp-[0-9a-f]{32}", created["totp_id"])
    assert created["user_id"] == "alice"
    assert re.fullmatch(r"[A-Z2-7]{32}", created["secret"])
    assert created["otpauth_uri"] == (
        f"otpauth://totp/totpd:alice?secret={created['secret']}&issuer=totpd"
    )
    qr = created["qr_code"]
    assert qr["mime_type"] == "image/png"
    assert qr["data_uri"].startswith("data:image/png;base64,")
    png = base64.b64decode(qr["image"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert qr["data_uri"] == "data:image/png;base64," + qr["image"]
    codes = created["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}", c) for c in codes)
    assert created["totp"]["state"] == "TOTP_STATE_PENDING"

    activated = activate(grpcurl, address, created)
    assert activated["totp"]["totp_id"] == created["totp_id"]
    assert activated["totp"]["state"] == "TOTP_STATE_ACTIVE"
    assert "replaced_totp_id" not in activated

    verified = grpcurl.call(
        address, "VerifyTotp", {"user_id": "alice", "code": next_code(created["secret"])}
    )
    assert verified["totp_id"] == created["totp_id"]
    # +1, or 0 (omitted in JSON) if the clock crossed into the next step meanwhile.
    assert verified.get("time_step_offset", 0) in (0, 1)


def test_invalid_argument_carries_error_info_and_bad_request(
    grpcurl: Grpcurl, address: str
) -> None:
    result = grpcurl.fail(address, "CreateTotp", {"user_id": "alice", "digits": 7, "period": "45s"})
    assert "Code: InvalidArgument" in result.output
    assert '"@type": "type.googleapis.com/google.rpc.ErrorInfo"' in result.output
    assert '"domain": "totpd"' in result.output
    assert '"reason": "INVALID_REQUEST"' in result.output
    assert '"@type": "type.googleapis.com/google.rpc.BadRequest"' in result.output
    assert '"field": "digits"' in result.output
    assert '"field": "period"' in result.output


def test_unknown_enrollment_is_not_found(grpcurl: Grpcurl, address: str) -> None:
    result = grpcurl.fail(
        address,
        "ActivateTotp",
        {"user_id": "alice", "totp_id": "totp-0123456789abcdef0123456789abcdef", "code": "123456"},
    )
    assert "Code: NotFound" in result.output
    assert '"reason": "TOTP_NOT_FOUND"' in result.output


def test_a_used_code_is_refused_with_invalid_code(
    grpcurl: Grpcurl, address: str, seen_secrets: list[str]
) -> None:
    created = create(grpcurl, address, "carol", seen_secrets)
    activate(grpcurl, address, created)
    code = next_code(created["secret"])
    grpcurl.call(address, "VerifyTotp", {"user_id": "carol", "code": code})

    result = grpcurl.fail(address, "VerifyTotp", {"user_id": "carol", "code": code})
    assert "Code: InvalidArgument" in result.output
    assert '"reason": "INVALID_CODE"' in result.output


def test_times_are_the_same_in_every_response(
    grpcurl: Grpcurl, address: str, seen_secrets: list[str]
) -> None:
    created = create(grpcurl, address, "frank", seen_secrets)
    pending = grpcurl.call(address, "GetTotp", {"user_id": "frank"})["pending_totps"][0]
    assert pending["create_time"] == created["totp"]["create_time"]
    assert pending["expire_time"] == created["expire_time"]
    activated = activate(grpcurl, address, created)["totp"]
    active = grpcurl.call(address, "GetTotp", {"user_id": "frank"})["active_totp"]
    assert active["activate_time"] == activated["activate_time"]
    assert active["create_time"] == activated["create_time"] == created["totp"]["create_time"]
