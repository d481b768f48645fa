"""A small synchronous client for ``totpd.v1.TotpService``.

    from totpd.client import TotpClient, InvalidCode

    with TotpClient("127.0.0.1:50051") as totpd:
        created = totpd.create_totp("alice")
        ...
        try:
            totpd.verify_totp("alice", code)
        except InvalidCode:
            ...

What it adds to the generated stub:
- a deadline on every call (``timeout``, 5 s by default);
- retries with exponential backoff, only on UNAVAILABLE and only for calls that are safe
  to repeat: GetTotp, DeleteTotp, and CreateTotp (which always carries a ``request_id``,
  generated if not given, so a retry returns the same enrollment). Code checks are never
  retried: a check that reached the server may have counted;
- errors raised as exceptions typed by ``google.rpc.ErrorInfo.reason``, carrying the
  reason, the field violations and the server's retry delay.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

__all__ = [
    "InvalidCode",
    "InvalidRequest",
    "RequestIdAlreadyUsed",
    "StoreUnavailable",
    "TooManyAttempts",
    "TotpClient",
    "TotpNotFound",
    "TotpdError",
]

DOMAIN = "totpd"
T = TypeVar("T")


class TotpdError(Exception):
    """A failed call. ``reason`` is the stable ErrorInfo reason (empty if there was none)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        field_violations: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code.name} {reason or '-'}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        #: INVALID_REQUEST: field name -> what is wrong with it.
        self.field_violations = field_violations or {}
        #: TOO_MANY_ATTEMPTS: seconds until a retry may succeed (None: not by waiting).
        self.retry_after = retry_after


class InvalidRequest(TotpdError):
    """INVALID_ARGUMENT / INVALID_REQUEST: see ``field_violations``."""


class InvalidCode(TotpdError):
    """INVALID_ARGUMENT / INVALID_CODE: wrong, reused or out-of-window code."""


class TotpNotFound(TotpdError):
    """NOT_FOUND / TOTP_NOT_FOUND."""


class TooManyAttempts(TotpdError):
    """RESOURCE_EXHAUSTED / TOO_MANY_ATTEMPTS: see ``retry_after``."""


class RequestIdAlreadyUsed(TotpdError):
    """ALREADY_EXISTS / REQUEST_ID_ALREADY_USED."""


class StoreUnavailable(TotpdError):
    """UNAVAILABLE: the server or its store cannot answer now."""


_BY_REASON: dict[str, type[TotpdError]] = {
    "INVALID_REQUEST": InvalidRequest,
    "INVALID_CODE": InvalidCode,
    "TOTP_NOT_FOUND": TotpNotFound,
    "TOO_MANY_ATTEMPTS": TooManyAttempts,
    "REQUEST_ID_ALREADY_USED": RequestIdAlreadyUsed,
    "STORE_UNAVAILABLE": StoreUnavailable,
}


def _error_of(error: grpc.RpcError) -> TotpdError:
    call: Any = error  # a grpc.Call as well as an RpcError
    reason, violations, retry_after = "", {}, None
    status = rpc_status.from_call(call)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason if info.domain == DOMAIN else ""
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = {v.field: v.description for v in bad.field_violations}
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToTimedelta().total_seconds()
    code: grpc.StatusCode = call.code()
    kind = _BY_REASON.get(reason)
    if kind is None:
        kind = StoreUnavailable if code == grpc.StatusCode.UNAVAILABLE else TotpdError
    return kind(code, reason, call.details() or "", violations, retry_after)


class TotpClient:
    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.1,
        channel: grpc.Channel | None = None,
    ) -> None:
        if channel is None:
            channel = (
                grpc.secure_channel(target, credentials)
                if credentials
                else grpc.insecure_channel(target)
            )
        self._channel = channel
        self._stub = pb_grpc.TotpServiceStub(channel)
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> TotpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: Callable[..., T], request: object, *, retry: bool) -> T:
        attempts = 1 + (self._retries if retry else 0)
        for attempt in range(attempts):
            try:
                return method(request, timeout=self._timeout)
            except grpc.RpcError as error:
                failure = _error_of(error)
                if failure.code != grpc.StatusCode.UNAVAILABLE or attempt + 1 == attempts:
                    raise failure from None
            # Full jitter, so retrying callers do not come back in step.
            time.sleep(random.uniform(0, self._backoff * 2**attempt))
        raise AssertionError("unreachable")

    def create_totp(
        self, user_id: str, *, request_id: str = "", **fields: Any
    ) -> pb.CreateTotpResponse:
        """CreateTotp. Other CreateTotpRequest fields go in ``fields`` (e.g. digits=8)."""
        request = pb.CreateTotpRequest(
            user_id=user_id, request_id=request_id or uuid.uuid4().hex, **fields
        )
        return self._call(self._stub.CreateTotp, request, retry=True)

    def activate_totp(self, user_id: str, totp_id: str, code: str) -> pb.ActivateTotpResponse:
        request = pb.ActivateTotpRequest(user_id=user_id, totp_id=totp_id, code=code)
        return self._call(self._stub.ActivateTotp, request, retry=False)

    def verify_totp(self, user_id: str, code: str) -> pb.VerifyTotpResponse:
        request = pb.VerifyTotpRequest(user_id=user_id, code=code)
        return self._call(self._stub.VerifyTotp, request, retry=False)

    def use_recovery_code(self, user_id: str, recovery_code: str) -> pb.UseRecoveryCodeResponse:
        request = pb.UseRecoveryCodeRequest(user_id=user_id, recovery_code=recovery_code)
        return self._call(self._stub.UseRecoveryCode, request, retry=False)

    def regenerate_recovery_codes(self, user_id: str) -> pb.RegenerateRecoveryCodesResponse:
        request = pb.RegenerateRecoveryCodesRequest(user_id=user_id)
        return self._call(self._stub.RegenerateRecoveryCodes, request, retry=False)

    def get_totp(self, user_id: str) -> pb.GetTotpResponse:
        return self._call(self._stub.GetTotp, pb.GetTotpRequest(user_id=user_id), retry=True)

    def delete_totp(self, user_id: str, totp_id: str = "") -> pb.DeleteTotpResponse:
        request = pb.DeleteTotpRequest(user_id=user_id, totp_id=totp_id)
        return self._call(self._stub.DeleteTotp, request, retry=True)
