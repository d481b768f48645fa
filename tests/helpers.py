"""Test helpers shared by every suite: codes computed the way an authenticator app does,
and the google.rpc details of an RPC error."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import grpc
import pyotp
from google.protobuf import message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

_DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


def totp_code(
    secret: str, at: float, *, digits: int = 6, period: int = 30, algorithm: str = "SHA1"
) -> str:
    """The code an authenticator app shows at time ``at`` (independent of the server)."""
    return pyotp.TOTP(secret, digits=digits, interval=period, digest=_DIGESTS[algorithm]).at(at)


@dataclass
class RpcErrorDetails:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    field_violations: dict[str, str]
    retry_delay: float | None


def _unpack(status_details: list, kind: type[message.Message]) -> message.Message | None:
    for any_ in status_details:
        if any_.Is(kind.DESCRIPTOR):
            out = kind()
            any_.Unpack(out)
            return out
    return None


def error_details(error: grpc.aio.AioRpcError | grpc.RpcError) -> RpcErrorDetails:
    """Parse the status code and google.rpc details of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    details = list(status.details) if status else []
    info = _unpack(details, error_details_pb2.ErrorInfo)
    bad = _unpack(details, error_details_pb2.BadRequest)
    retry = _unpack(details, error_details_pb2.RetryInfo)
    return RpcErrorDetails(
        code=error.code(),
        message=error.details() or "",
        reason=info.reason if info else "",
        domain=info.domain if info else "",
        field_violations={v.field: v.description for v in bad.field_violations} if bad else {},
        retry_delay=retry.retry_delay.ToTimedelta().total_seconds() if retry else None,
    )
