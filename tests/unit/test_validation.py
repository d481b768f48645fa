"""Request checks: every invalid field is named, all at once; defaults are filled in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import duration_pb2

from totpd.api import validation
from totpd.errors import InvalidRequest
from totpd.model import Algorithm, CreateCommand, QrFormat, TotpParams
from totpd.v1 import totp_service_pb2 as pb


def _violations(check: Callable[[Any], object], request: object) -> list[str]:
    """The fields named by the InvalidRequest that ``check`` raises, in order."""
    with pytest.raises(InvalidRequest) as caught:
        check(request)
    assert caught.value.violations, "InvalidRequest without violations"
    for violation in caught.value.violations:
        assert violation.description  # says what is expected
    return [v.field for v in caught.value.violations]


def _create(**fields: Any) -> pb.CreateTotpRequest:
    fields.setdefault("user_id", "alice")
    return pb.CreateTotpRequest(**fields)


def _create_rejects(**fields: Any) -> list[str]:
    return _violations(validation.create_command, _create(**fields))


# -- CreateTotp: defaults and accepted values ------------------------------------------


def test_create_defaults() -> None:
    command = validation.create_command(pb.CreateTotpRequest(user_id="alice"))
    assert command == CreateCommand(
        user_id="alice",
        expiration_seconds=1440 * 60,
        issuer="",
        account_name="alice",
        request_id="",
        params=TotpParams(Algorithm.SHA1, 6, 30),
        qr_format=QrFormat.PNG,
        qr_size=256,
    )


def test_create_explicit_values_are_kept() -> None:
    command = validation.create_command(
        pb.CreateTotpRequest(
            user_id="alice",
            expiration_minutes=5,
            issuer="Example Co",
            account_name="alice@example.com",
            request_id="req-1",
            algorithm=pb.TOTP_ALGORITHM_SHA512,
            digits=8,
            period=duration_pb2.Duration(seconds=60),
            qr_code_format=pb.QR_CODE_FORMAT_SVG,
            qr_code_size=1024,
        )
    )
    assert command == CreateCommand(
        user_id="alice",
        expiration_seconds=300,
        issuer="Example Co",
        account_name="alice@example.com",
        request_id="req-1",
        params=TotpParams(Algorithm.SHA512, 8, 60),
        qr_format=QrFormat.SVG,
        qr_size=1024,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (pb.TOTP_ALGORITHM_UNSPECIFIED, Algorithm.SHA1),
        (pb.TOTP_ALGORITHM_SHA1, Algorithm.SHA1),
        (pb.TOTP_ALGORITHM_SHA256, Algorithm.SHA256),
        (pb.TOTP_ALGORITHM_SHA512, Algorithm.SHA512),
    ],
)
def test_create_algorithms(value: int, expected: Algorithm) -> None:
    assert validation.create_command(_create(algorithm=value)).params.algorithm is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (pb.QR_CODE_FORMAT_UNSPECIFIED, QrFormat.PNG),
        (pb.QR_CODE_FORMAT_PNG, QrFormat.PNG),
        (pb.QR_CODE_FORMAT_SVG, QrFormat.SVG),
    ],
)
def test_create_qr_formats(value: int, expected: QrFormat) -> None:
    assert validation.create_command(_create(qr_code_format=value)).qr_format is expected


@pytest.mark.parametrize(("minutes", "seconds"), [(0, 86400), (5, 300), (60, 3600), (1440, 86400)])
def test_create_expiration_accepted(minutes: int, seconds: int) -> None:
    command = validation.create_command(_create(expiration_minutes=minutes))
    assert command.expiration_seconds == seconds


@pytest.mark.parametrize(("digits", "expected"), [(0, 6), (6, 6), (8, 8)])
def test_create_digits_accepted(digits: int, expected: int) -> None:
    assert validation.create_command(_create(digits=digits)).params.digits == expected


@pytest.mark.parametrize(("seconds", "expected"), [(None, 30), (30, 30), (60, 60)])
def test_create_period_accepted(seconds: int | None, expected: int) -> None:
    fields = {} if seconds is None else {"period": duration_pb2.Duration(seconds=seconds)}
    assert validation.create_command(_create(**fields)).params.period == expected


@pytest.mark.parametrize(("size", "expected"), [(0, 256), (64, 64), (300, 300), (1024, 1024)])
def test_create_qr_size_accepted(size: int, expected: int) -> None:
    assert validation.create_command(_create(qr_code_size=size)).qr_size == expected


@pytest.mark.parametrize(
    "user_id",
    [
        "a",
        "a" * 256,
        "é" * 128,  # 256 bytes
        "😀" * 64,  # 256 bytes of 4-byte characters
        "Ålice Ünïcödé 李",
        "user{with}braces:and colons",
        "alice@example.com",
    ],
)
def test_create_user_id_accepted(user_id: str) -> None:
    request = _create(user_id=user_id, account_name="shown")
    assert validation.create_command(request).user_id == user_id


def test_account_name_defaults_to_the_user_id() -> None:
    assert validation.create_command(_create(user_id="bob")).account_name == "bob"


def test_a_user_id_with_a_colon_needs_an_account_name() -> None:
    # The Key URI label is "issuer:account"; apps split it at the colon, so a colon in
    # the account name (which defaults to the user id) would garble it.
    assert _create_rejects(user_id="corp:alice") == ["account_name"]
    command = validation.create_command(_create(user_id="corp:alice", account_name="alice"))
    assert (command.user_id, command.account_name) == ("corp:alice", "alice")


def test_create_issuer_and_account_at_their_limits_are_accepted() -> None:
    command = validation.create_command(_create(issuer="i" * 64, account_name="a" * 256))
    assert command.issuer == "i" * 64
    assert command.account_name == "a" * 256


# -- CreateTotp: violations ------------------------------------------------------------


@pytest.mark.parametrize(
    "user_id",
    [
        "",
        "a" * 257,
        "é" * 128 + "a",  # 129 characters but 257 bytes: bytes count
        "😀" * 64 + "a",
        "alice\n",
        "ali\x00ce",
        "alice\t",
        "alice\x7f",
        "alice\x1b[31m",
        "alice\u200b",  # zero-width space (format character)
        "alice\u2028",  # line separator
    ],
)
def test_create_user_id_rejected(user_id: str) -> None:
    assert _create_rejects(user_id=user_id) == ["user_id"]


@pytest.mark.parametrize("minutes", [4, 1, 1441, 10_000, -1, -1440])
def test_create_expiration_rejected(minutes: int) -> None:
    assert _create_rejects(expiration_minutes=minutes) == ["expiration_minutes"]


@pytest.mark.parametrize("digits", [7, 1, 5, 9, 10, -6])
def test_create_digits_rejected(digits: int) -> None:
    assert _create_rejects(digits=digits) == ["digits"]


@pytest.mark.parametrize(
    "period",
    [
        duration_pb2.Duration(seconds=45),
        duration_pb2.Duration(seconds=30, nanos=1),
        duration_pb2.Duration(seconds=30, nanos=500_000_000),
        duration_pb2.Duration(seconds=59, nanos=999_999_999),
        duration_pb2.Duration(seconds=0),  # set, but to zero: not "unset"
        duration_pb2.Duration(seconds=-30),
        duration_pb2.Duration(seconds=90),
        duration_pb2.Duration(seconds=3600),
    ],
)
def test_create_period_rejected(period: duration_pb2.Duration) -> None:
    assert _create_rejects(period=period) == ["period"]


@pytest.mark.parametrize("value", [4, 99, -1])
def test_create_unknown_algorithm_number_rejected(value: int) -> None:
    request = _create()
    request.algorithm = value  # type: ignore[assignment]  # a raw number off the wire
    assert request.algorithm == value
    assert _violations(validation.create_command, request) == ["algorithm"]


@pytest.mark.parametrize("value", [3, 99, -1])
def test_create_unknown_qr_format_number_rejected(value: int) -> None:
    request = _create()
    request.qr_code_format = value  # type: ignore[assignment]
    assert _violations(validation.create_command, request) == ["qr_code_format"]


@pytest.mark.parametrize("size", [63, 1, 1025, 4096, -1])
def test_create_qr_size_rejected(size: int) -> None:
    assert _create_rejects(qr_code_size=size) == ["qr_code_size"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("issuer", "Example:Co"),
        ("issuer", ":"),
        ("issuer", "i" * 65),
        ("issuer", "Example\nCo"),
        ("account_name", "alice:admin"),
        ("account_name", "a" * 257),
        ("account_name", "alice\x00"),
        ("request_id", "r" * 65),
        ("request_id", "req\n1"),
    ],
)
def test_create_text_fields_rejected(field: str, value: str) -> None:
    assert set(_create_rejects(**{field: value})) == {field}


@pytest.mark.parametrize(
    ("field", "limit"), [("issuer", 64), ("account_name", 256), ("request_id", 64)]
)
def test_text_limits_count_utf8_bytes_as_documented(field: str, limit: int) -> None:
    assert validation.create_command(_create(**{field: "é" * (limit // 2)}))  # at the limit
    assert _create_rejects(**{field: "é" * (limit // 2) + "x"}) == [field]


def test_create_reports_every_violation_at_once() -> None:
    request = pb.CreateTotpRequest(
        user_id="",
        expiration_minutes=4,
        issuer="a:b",
        account_name="c:d",
        request_id="r" * 65,
        digits=7,
        period=duration_pb2.Duration(seconds=45),
        qr_code_size=63,
    )
    request.algorithm = 99  # type: ignore[assignment]
    request.qr_code_format = 99  # type: ignore[assignment]
    fields = _violations(validation.create_command, request)
    assert sorted(fields) == sorted(
        [
            "user_id",
            "expiration_minutes",
            "issuer",
            "account_name",
            "request_id",
            "algorithm",
            "digits",
            "period",
            "qr_code_format",
            "qr_code_size",
        ]
    )


def test_violation_messages_do_not_echo_the_value() -> None:
    secretish = "hunter2-" + "x" * 300
    with pytest.raises(InvalidRequest) as caught:
        validation.create_command(_create(user_id=secretish, account_name="p:" + secretish))
    assert "hunter2" not in str(caught.value)


# -- ActivateTotp / VerifyTotp codes ---------------------------------------------------

BAD_CODES = [
    "",
    "12345",
    "1234567",
    "123456789",
    "12a456",
    " 123456",
    "123456 ",
    "123456\n",
    "+12345",
    "-12345",
    "12 456",
    "1234-5678",
    "١٢٣٤٥٦",  # Arabic-Indic digits
    "۱۲۳۴۵۶",  # Extended Arabic-Indic digits
    "１２３４５６",  # full-width digits
    "𝟏𝟐𝟑𝟒𝟓𝟔",  # mathematical bold digits
    "12345６",
    "¹²³⁴⁵⁶",  # superscripts
]
GOOD_CODES = ["123456", "000000", "12345678", "00000000"]


def _activate(code: str, **fields: Any) -> pb.ActivateTotpRequest:
    fields.setdefault("user_id", "alice")
    fields.setdefault("totp_id", "totp-0123abcd")
    return pb.ActivateTotpRequest(code=code, **fields)


@pytest.mark.parametrize("code", BAD_CODES)
def test_activate_code_rejected(code: str) -> None:
    assert _violations(validation.activate_request, _activate(code)) == ["code"]


@pytest.mark.parametrize("code", GOOD_CODES)
def test_activate_code_accepted(code: str) -> None:
    validation.activate_request(_activate(code))


@pytest.mark.parametrize("code", BAD_CODES)
def test_verify_code_rejected(code: str) -> None:
    request = pb.VerifyTotpRequest(user_id="alice", code=code)
    assert _violations(validation.verify_request, request) == ["code"]


@pytest.mark.parametrize("code", GOOD_CODES)
def test_verify_code_accepted(code: str) -> None:
    validation.verify_request(pb.VerifyTotpRequest(user_id="alice", code=code))


@pytest.mark.parametrize("totp_id", ["", "totp/../x", "totp id", "t" * 65, "totp-ä", "a\n"])
def test_activate_totp_id_rejected(totp_id: str) -> None:
    assert _violations(validation.activate_request, _activate("123456", totp_id=totp_id)) == [
        "totp_id"
    ]


def test_activate_reports_every_violation_at_once() -> None:
    request = pb.ActivateTotpRequest(user_id="", totp_id="", code="12")
    assert _violations(validation.activate_request, request) == ["user_id", "totp_id", "code"]


def test_verify_reports_every_violation_at_once() -> None:
    request = pb.VerifyTotpRequest(user_id="a\x00", code="x")
    assert _violations(validation.verify_request, request) == ["user_id", "code"]


# -- the other requests ----------------------------------------------------------------


@pytest.mark.parametrize("code", ["ckss-2skx-eb0w", "CKSS2SKXEB0W", "!!!", "x" * 64])
def test_recovery_code_accepted_if_present_and_short(code: str) -> None:
    # Only presence and size: a malformed code is a wrong code, and counts as one.
    validation.recovery_code_request(pb.UseRecoveryCodeRequest(user_id="alice", recovery_code=code))


@pytest.mark.parametrize(("user_id", "code"), [("alice", ""), ("alice", "x" * 65)])
def test_recovery_code_rejected(user_id: str, code: str) -> None:
    request = pb.UseRecoveryCodeRequest(user_id=user_id, recovery_code=code)
    assert _violations(validation.recovery_code_request, request) == ["recovery_code"]


def test_recovery_code_reports_user_id_too() -> None:
    request = pb.UseRecoveryCodeRequest(user_id="", recovery_code="")
    assert _violations(validation.recovery_code_request, request) == ["user_id", "recovery_code"]


@pytest.mark.parametrize("request_type", [pb.GetTotpRequest, pb.RegenerateRecoveryCodesRequest])
def test_user_requests(request_type: type) -> None:
    validation.user_request(request_type(user_id="alice"))
    assert _violations(validation.user_request, request_type(user_id="")) == ["user_id"]
    assert _violations(validation.user_request, request_type(user_id="a" * 257)) == ["user_id"]


def test_delete_request() -> None:
    validation.delete_request(pb.DeleteTotpRequest(user_id="alice"))  # the active one
    validation.delete_request(pb.DeleteTotpRequest(user_id="alice", totp_id="totp-12ab"))
    bad = pb.DeleteTotpRequest(user_id="", totp_id="../etc")
    assert _violations(validation.delete_request, bad) == ["user_id", "totp_id"]
