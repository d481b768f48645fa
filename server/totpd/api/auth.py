"""Caller authentication and per-RPC permissions: one interceptor in front of TotpService.

Every TotpService call must come from a caller of the callers file (``totpd.callers``):
a bearer token in ``authorization`` metadata, or else a verified client certificate whose
SAN is one of the caller's ``tls_identities``.

- no credentials, a bad token, or a certificate naming no caller: UNAUTHENTICATED
- a known caller calling an RPC it is not granted: PERMISSION_DENIED

Both are answered before the handler runs, so a rejected call never reaches the store.
Health (``grpc.health.v1``) and, when enabled, reflection stay open: they reveal liveness
and the public schema, nothing of any user. The identity of an accepted call is
available to the handler through ``current_identity()`` (for audit events).
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, cast

import grpc

from ..callers import Callers, Identified
from .interception import Behavior, Handler, TotpServiceInterceptor
from .status import abort, error_status

log = logging.getLogger(__name__)

_IDENTITY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "totpd_caller_identity", default=None
)

UNAUTHENTICATED = "UNAUTHENTICATED"
PERMISSION_DENIED = "PERMISSION_DENIED"
SAN_PROPERTY = "x509_subject_alternative_name"


def current_identity() -> str | None:
    """The authenticated identity of the call being handled, None outside the interceptor."""
    return _IDENTITY.get()


def _bearer(metadata: Any) -> tuple[bool, str | None]:
    """(whether an authorization header was sent, the bearer token if well-formed)."""
    values = [v for k, v in (metadata or ()) if k == "authorization"]
    if not values:
        return False, None
    if len(values) != 1 or not isinstance(values[0], str):
        return True, None
    scheme, _, token = values[0].partition(" ")
    token = token.strip()
    return True, token if scheme.lower() == "bearer" and token else None


def peer_sans(context: grpc.aio.ServicerContext[Any, Any]) -> list[str]:
    """The SANs of the peer's verified client certificate (none without mTLS)."""
    raw = context.auth_context().get(SAN_PROPERTY, ())
    return [value.decode(errors="replace") for value in raw]


class AuthInterceptor(TotpServiceInterceptor):
    def __init__(self, callers: Callers, service_name: str) -> None:
        super().__init__(service_name)
        self._callers = callers

    def _identify(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identified | None:
        sent, token = _bearer(context.invocation_metadata())
        if sent:
            # A token that was sent decides, even next to a certificate: a bad one fails.
            return self._callers.by_token(token) if token else None
        return self._callers.by_tls_identities(peer_sans(context))

    def wrap(self, rpc: str, handler: Handler) -> Handler:
        if handler.unary_unary is None:  # every TotpService RPC is unary: fail closed
            return _deny_all(handler)
        behavior = cast(Behavior, handler.unary_unary)

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            identified = self._identify(context)
            if identified is None:
                log.info("rejected %s: no valid caller credentials", rpc)
                status = error_status(
                    grpc.StatusCode.UNAUTHENTICATED,
                    UNAUTHENTICATED,
                    "missing or invalid caller credentials",
                )
                await abort(context, status)
            assert identified is not None
            if not identified.caller.may_call(rpc):
                log.warning("denied %s to caller %s", rpc, identified.caller.name)
                status = error_status(
                    grpc.StatusCode.PERMISSION_DENIED,
                    PERMISSION_DENIED,
                    f"caller {identified.caller.name!r} may not call {rpc}",
                )
                await abort(context, status)
            reset = _IDENTITY.set(identified.identity)
            try:
                return await behavior(request, context)
            finally:
                _IDENTITY.reset(reset)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _deny_all(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not a unary RPC")

    return grpc.unary_unary_rpc_method_handler(
        deny,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
