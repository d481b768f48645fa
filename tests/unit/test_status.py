"""Domain errors as gRPC statuses: code, ErrorInfo, BadRequest and RetryInfo (AIP-193)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import message
from google.rpc import error_details_pb2, status_pb2

from totpd.api.status import error_status, to_status
from totpd.errors import (
    FieldViolation,
    InvalidCode,
    InvalidRequest,
    RequestIdAlreadyUsed,
    StoreUnavailable,
    TooManyAttempts,
    TotpdError,
    TotpNotFound,
)

DETAILS_KEY = "grpc-status-details-bin"


def _rich_status(status: grpc.Status) -> status_pb2.Status:
    """The google.rpc.Status carried in the trailing metadata, checked against the rest."""
    metadata = dict(status.trailing_metadata)
    assert set(metadata) == {DETAILS_KEY}
    rich = status_pb2.Status.FromString(metadata[DETAILS_KEY])
    assert rich.code == status.code.value[0]
    assert rich.message == status.details
    return rich


def _details(rich: status_pb2.Status) -> dict[str, message.Message]:
    kinds = (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo)
    out: dict[str, message.Message] = {}
    for packed in rich.details:
        for kind in kinds:
            if packed.Is(kind.DESCRIPTOR):
                unpacked = kind()
                packed.Unpack(unpacked)
                name = kind.DESCRIPTOR.name
                assert name not in out, f"two {name} details"
                out[name] = unpacked
                break
        else:
            pytest.fail(f"unexpected detail {packed.type_url}")
    return out


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (
            InvalidRequest([FieldViolation("digits", "must be 6 or 8")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
        (TotpNotFound("no such enrollment"), grpc.StatusCode.NOT_FOUND, "TOTP_NOT_FOUND"),
        (InvalidCode("the code is not valid"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CODE"),
        (
            TooManyAttempts("too many", 30.0),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_ATTEMPTS",
        ),
        (
            TooManyAttempts("discarded"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_ATTEMPTS",
        ),
        (
            RequestIdAlreadyUsed("used"),
            grpc.StatusCode.ALREADY_EXISTS,
            "REQUEST_ID_ALREADY_USED",
        ),
        (StoreUnavailable("redis: TimeoutError"), grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, TotpdError) else None,
)
def test_each_error_gets_its_code_and_reason(
    error: TotpdError, code: grpc.StatusCode, reason: str
) -> None:
    status = to_status(error)
    assert status.code == code
    assert status.details == str(error)
    details = _details(_rich_status(status))
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == reason
    assert info.domain == "totpd"


def test_subclasses_map_like_their_base() -> None:
    class ExpiredEnrollment(TotpNotFound):
        pass

    status = to_status(ExpiredEnrollment("gone"))
    assert status.code == grpc.StatusCode.NOT_FOUND
    info = _details(_rich_status(status))["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "TOTP_NOT_FOUND"


def test_invalid_request_carries_one_field_violation_each() -> None:
    error = InvalidRequest(
        [
            FieldViolation("user_id", "is required"),
            FieldViolation("period", "must be unset (default 30s), 30s or 60s"),
            FieldViolation("issuer", "must not contain ':'"),
        ]
    )
    details = _details(_rich_status(to_status(error)))
    assert set(details) == {"ErrorInfo", "BadRequest"}
    bad = details["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("user_id", "is required"),
        ("period", "must be unset (default 30s), 30s or 60s"),
        ("issuer", "must not contain ':'"),
    ]


@pytest.mark.parametrize(
    "error",
    [
        TotpNotFound("x"),
        InvalidCode("x"),
        RequestIdAlreadyUsed("x"),
        StoreUnavailable("x"),
        TooManyAttempts("x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_carry_only_what_applies(error: TotpdError) -> None:
    assert set(_details(_rich_status(to_status(error)))) == {"ErrorInfo"}


@pytest.mark.parametrize(
    ("retry_after", "seconds"),
    [(60.0, 60), (120.0, 120), (59.001, 60), (0.2, 1), (0.0, 1), (1.0, 1), (3599.5, 3600)],
)
def test_too_many_attempts_with_retry_after_has_retry_info(
    retry_after: float, seconds: int
) -> None:
    details = _details(_rich_status(to_status(TooManyAttempts("locked", retry_after))))
    assert set(details) == {"ErrorInfo", "RetryInfo"}
    retry = details["RetryInfo"]
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.seconds == seconds
    assert retry.retry_delay.nanos == 0


def test_error_status_for_errors_outside_the_domain() -> None:
    status = error_status(grpc.StatusCode.INTERNAL, "INTERNAL", "internal error")
    assert status.code == grpc.StatusCode.INTERNAL
    assert status.details == "internal error"
    details = _details(_rich_status(status))
    assert set(details) == {"ErrorInfo"}
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("INTERNAL", "totpd")
