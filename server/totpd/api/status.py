"""Domain errors as gRPC statuses with ``google.rpc`` details (AIP-193).

Each error gets a canonical code and an ``ErrorInfo`` with a stable ``reason`` and
``domain: "totpd"``; invalid input adds ``BadRequest`` field violations, lockouts add
``RetryInfo``. This module is the only place that knows which code each error becomes.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..errors import (
    InvalidCode,
    InvalidRequest,
    RequestIdAlreadyUsed,
    StoreUnavailable,
    TooManyAttempts,
    TotpdError,
    TotpNotFound,
)

DOMAIN = "totpd"

# error class -> (status code, ErrorInfo.reason); subclasses map like their base.
_MAPPING: dict[type[TotpdError], tuple[grpc.StatusCode, str]] = {
    InvalidRequest: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
    TotpNotFound: (grpc.StatusCode.NOT_FOUND, "TOTP_NOT_FOUND"),
    InvalidCode: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CODE"),
    TooManyAttempts: (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_ATTEMPTS"),
    RequestIdAlreadyUsed: (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_ALREADY_USED"),
    StoreUnavailable: (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE"),
}


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def error_status(code: grpc.StatusCode, reason: str, message: str) -> grpc.Status:
    """A status with just an ErrorInfo, for errors raised outside the domain."""
    return _to_status(code, message, [error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)])


def _to_status(code: grpc.StatusCode, message: str, details: list[object]) -> grpc.Status:
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name),
        message=message,
        details=[_pack(d) for d in details],
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result


async def abort(context: grpc.aio.ServicerContext[Any, Any], status: grpc.Status) -> NoReturn:
    """End the call with ``status``, its google.rpc details in the trailers."""
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("context.abort returned")  # it always raises


def to_status(error: TotpdError) -> grpc.Status:
    code, reason = next(v for k, v in _MAPPING.items() if isinstance(error, k))
    details: list[object] = [error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)]
    if isinstance(error, InvalidRequest):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description, reason="INVALID_FIELD"
                    )
                    for v in error.violations
                ]
            )
        )
    if isinstance(error, TooManyAttempts) and error.retry_after is not None:
        delay = duration_pb2.Duration(seconds=max(1, math.ceil(error.retry_after)))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return _to_status(code, str(error), details)
