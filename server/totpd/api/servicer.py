"""TotpService over gRPC: translates proto requests to domain calls and results back.

Handlers hold no logic of their own: validate, call the service, convert. Domain errors
become statuses in one place (``_translating_errors``); anything unexpected is logged and
answered with INTERNAL and no details, never with a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from ..errors import TotpdError
from ..model import Algorithm, Lockout, Totp, TotpState
from ..service import TotpService
from ..v1 import totp_service_pb2 as pb
from ..v1 import totp_service_pb2_grpc as pb_grpc
from . import validation
from .auth import SAN_PROPERTY, current_identity
from .status import abort, error_status, to_status

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[["TotpServicer", Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]

_STATES = {TotpState.PENDING: pb.TOTP_STATE_PENDING, TotpState.ACTIVE: pb.TOTP_STATE_ACTIVE}
_ALGORITHMS = {
    Algorithm.SHA1: pb.TOTP_ALGORITHM_SHA1,
    Algorithm.SHA256: pb.TOTP_ALGORITHM_SHA256,
    Algorithm.SHA512: pb.TOTP_ALGORITHM_SHA512,
}


def _translating_errors(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    @functools.wraps(handler)
    async def wrapper(
        self: TotpServicer, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        remaining = context.time_remaining()
        # Stop a little before the caller's deadline, so our DEADLINE_EXCEEDED is sent
        # before gRPC cancels the call (sending on a cancelled call fails noisily).
        budget = None if remaining is None else remaining - min(0.05, remaining / 10)
        try:
            # The request's deadline bounds everything it waits for, Redis included: no
            # handler outlives its caller (OWASP gRPC: propagate deadlines).
            async with asyncio.timeout(budget) as deadline:
                return await handler(self, request, context)
        except TotpdError as error:
            status = to_status(error)
        except TimeoutError:
            if not deadline.expired():
                log.exception("unexpected timeout in %s", handler.__name__)
                status = error_status(grpc.StatusCode.INTERNAL, "INTERNAL", "internal error")
            else:
                log.info("%s stopped at its deadline (%.3fs)", handler.__name__, remaining or 0)
                status = error_status(
                    grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", "deadline exceeded"
                )
        except Exception:
            # Type and traceback only: exception messages may quote request data.
            log.exception("unexpected error in %s", handler.__name__)
            status = error_status(grpc.StatusCode.INTERNAL, "INTERNAL", "internal error")
        await abort(context, status)

    return wrapper


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(round(seconds * 1000))  # the service's resolution; exact in a float
    return ts


def _totp(totp: Totp) -> pb.Totp:
    return pb.Totp(
        totp_id=totp.totp_id,
        user_id=totp.user_id,
        state=_STATES[totp.state],
        algorithm=_ALGORITHMS[totp.params.algorithm],
        digits=totp.params.digits,
        period=duration_pb2.Duration(seconds=totp.params.period),
        create_time=_timestamp(totp.create_time),
        activate_time=_timestamp(totp.activate_time),
        expire_time=_timestamp(totp.expire_time),
        last_used_time=_timestamp(totp.last_used_time),
        issuer=totp.issuer,
        account_name=totp.account_name,
    )


def _lockout(lockout: Lockout, locked: bool) -> pb.Lockout:
    return pb.Lockout(
        locked=locked,
        consecutive_failures=lockout.consecutive_failures,
        lock_expire_time=_timestamp(
            lockout.locked_until if locked and not lockout.permanent else None
        ),
        permanent=lockout.permanent,
    )


def caller_of(context: grpc.aio.ServicerContext[Any, Any], tls: bool = True) -> str:
    """The calling service's identity, for audit events: the one the auth interceptor
    established (certificate SAN or callers-file name), else any TLS identity (when
    the server runs without a callers file). Without ``tls`` there is none to look for
    (and gRPC's auth context, built for every call that asks, is skipped)."""
    identity = current_identity()
    if identity is not None or not tls:
        return identity or ""
    auth = context.auth_context()
    for key in (SAN_PROPERTY, "x509_common_name"):
        value = next(iter(auth.get(key, ())), None)
        if value:
            return value.decode(errors="replace")
    return ""


class TotpServicer(pb_grpc.TotpServiceServicer):
    def __init__(self, service: TotpService, tls: bool = True) -> None:
        """``tls``: whether the server's port is TLS, so callers may have certificates."""
        self._service = service
        self._tls = tls

    def _caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        return caller_of(context, self._tls)

    @_translating_errors
    async def CreateTotp(
        self,
        request: pb.CreateTotpRequest,
        context: grpc.aio.ServicerContext[pb.CreateTotpRequest, pb.CreateTotpResponse],
    ) -> pb.CreateTotpResponse:
        command = validation.create_command(request)
        enrollment = await self._service.create(command, self._caller(context))
        qr = enrollment.qr_code
        data_uri = f"data:{qr.format.value};base64,{base64.b64encode(qr.image).decode()}"
        return pb.CreateTotpResponse(
            totp_id=enrollment.totp.totp_id,
            user_id=enrollment.totp.user_id,
            secret=enrollment.secret,
            otpauth_uri=enrollment.otpauth_uri,
            qr_code=pb.QrCode(image=qr.image, mime_type=qr.format.value, data_uri=data_uri),
            recovery_codes=enrollment.recovery_codes,
            expire_time=_timestamp(enrollment.totp.expire_time),
            totp=_totp(enrollment.totp),
        )

    @_translating_errors
    async def ActivateTotp(
        self,
        request: pb.ActivateTotpRequest,
        context: grpc.aio.ServicerContext[pb.ActivateTotpRequest, pb.ActivateTotpResponse],
    ) -> pb.ActivateTotpResponse:
        validation.activate_request(request)
        activation = await self._service.activate(
            request.user_id, request.totp_id, request.code, self._caller(context)
        )
        return pb.ActivateTotpResponse(
            totp=_totp(activation.totp), replaced_totp_id=activation.replaced_totp_id or ""
        )

    @_translating_errors
    async def VerifyTotp(
        self,
        request: pb.VerifyTotpRequest,
        context: grpc.aio.ServicerContext[pb.VerifyTotpRequest, pb.VerifyTotpResponse],
    ) -> pb.VerifyTotpResponse:
        validation.verify_request(request)
        result = await self._service.verify(request.user_id, request.code, self._caller(context))
        return pb.VerifyTotpResponse(
            totp_id=result.totp_id, time_step_offset=result.time_step_offset
        )

    @_translating_errors
    async def UseRecoveryCode(
        self,
        request: pb.UseRecoveryCodeRequest,
        context: grpc.aio.ServicerContext[pb.UseRecoveryCodeRequest, pb.UseRecoveryCodeResponse],
    ) -> pb.UseRecoveryCodeResponse:
        validation.recovery_code_request(request)
        result = await self._service.use_recovery_code(
            request.user_id, request.recovery_code, self._caller(context)
        )
        return pb.UseRecoveryCodeResponse(
            totp_id=result.totp_id, recovery_codes_remaining=result.remaining
        )

    @_translating_errors
    async def RegenerateRecoveryCodes(
        self,
        request: pb.RegenerateRecoveryCodesRequest,
        context: grpc.aio.ServicerContext[
            pb.RegenerateRecoveryCodesRequest, pb.RegenerateRecoveryCodesResponse
        ],
    ) -> pb.RegenerateRecoveryCodesResponse:
        validation.user_request(request)
        totp_id, codes = await self._service.regenerate_recovery_codes(
            request.user_id, self._caller(context)
        )
        return pb.RegenerateRecoveryCodesResponse(totp_id=totp_id, recovery_codes=codes)

    @_translating_errors
    async def GetTotp(
        self,
        request: pb.GetTotpRequest,
        context: grpc.aio.ServicerContext[pb.GetTotpRequest, pb.GetTotpResponse],
    ) -> pb.GetTotpResponse:
        validation.user_request(request)
        status = await self._service.status(request.user_id)
        return pb.GetTotpResponse(
            active_totp=_totp(status.active) if status.active else None,
            pending_totps=[_totp(p) for p in status.pending],
            recovery_codes_remaining=status.recovery_codes_remaining,
            lockout=_lockout(status.lockout, status.locked)
            if status.locked or status.lockout.consecutive_failures
            else None,
        )

    @_translating_errors
    async def DeleteTotp(
        self,
        request: pb.DeleteTotpRequest,
        context: grpc.aio.ServicerContext[pb.DeleteTotpRequest, pb.DeleteTotpResponse],
    ) -> pb.DeleteTotpResponse:
        validation.delete_request(request)
        deleted = await self._service.delete(
            request.user_id, request.totp_id or None, self._caller(context)
        )
        return pb.DeleteTotpResponse(deleted=deleted)
