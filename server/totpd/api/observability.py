"""One JSON log line and one metrics sample per TotpService call.

``ObservingInterceptor`` goes first in the chain, so it sees every call's final status
code: OK, the domain errors the servicer aborts with, and the aborts of the interceptors
after it (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT). The caller's identity is
only known inside ``AuthInterceptor``; ``CallerProbe``, placed right after it, copies it
into the record of the call.

The log line (logger ``totpd.rpc``, docs/observability.md) has the method, the status
code name, the duration, a request id and the caller's identity; never the request or
response (user ids, codes, secrets, URIs), nor any error message.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import grpc

from ..logs import RpcLine, rpc_line
from .auth import current_identity
from .interception import Behavior, Context, Handler, TotpServiceInterceptor

REQUEST_ID_HEADER = "x-request-id"
# A client's request id is logged only if it looks like one: no free text in the logs.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

#: (method, status code name, seconds): where the samples go (totpd.metrics.Metrics.rpc).
RpcObserver = Callable[[str, str, float], None]
#: (method): a call has started (totpd.metrics.Metrics.rpc_started); each one that does
#: also reaches the RpcObserver when it ends.
RpcStarted = Callable[[str], None]


@dataclass
class _Call:
    caller: str = ""


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "totpd_observed_call", default=None
)


def request_id(metadata: Any) -> str:
    """The client's ``x-request-id`` if it is a plain token, else a new random one.

    Random for telling calls apart in logs, not a secret: Python's PRNG (reseeded in each
    forked worker) makes it without the system call per call of ``secrets``."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            return value
    return f"{random.getrandbits(64):016x}"


def _code_name(context: Context, default: grpc.StatusCode) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):  # grpc.aio keeps the raw integer in some versions
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), default.name)
    return default.name


class ObservingInterceptor(TotpServiceInterceptor):
    def __init__(
        self,
        service_name: str,
        observe: RpcObserver | None = None,
        started: RpcStarted | None = None,
        log_rpc: RpcLine | None = None,
    ) -> None:
        super().__init__(service_name)
        self._observe = observe
        self._started = started
        # The cheapest way to the log under the logging configuration of now (logs.py).
        self._log_rpc = log_rpc or rpc_line()

    def wrap(self, rpc: str, handler: Handler) -> Handler:
        if handler.unary_unary is None:
            return handler  # every TotpService RPC is unary (AuthInterceptor fails closed)
        behavior = cast(Behavior, handler.unary_unary)

        async def observed(request: Any, context: Context) -> Any:
            began = time.perf_counter()
            rid = request_id(context.invocation_metadata())
            call = _Call()
            token = _CALL.set(call)
            outcome = grpc.StatusCode.OK
            if self._started is not None:
                self._started(rpc)
            try:
                return await behavior(request, context)
            except asyncio.CancelledError:
                outcome = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                outcome = grpc.StatusCode.UNKNOWN  # what grpc answers unless aborted
                raise
            finally:
                _CALL.reset(token)
                seconds = time.perf_counter() - began
                code = _code_name(context, outcome)
                if self._observe is not None:
                    self._observe(rpc, code, seconds)
                self._log_rpc(rpc, code, seconds, rid, call.caller)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class CallerProbe(TotpServiceInterceptor):
    """Records the authenticated identity for ``ObservingInterceptor``'s log line; goes
    right after ``AuthInterceptor``."""

    def wrap(self, rpc: str, handler: Handler) -> Handler:
        if handler.unary_unary is None:
            return handler
        behavior = cast(Behavior, handler.unary_unary)

        async def probed(request: Any, context: Context) -> Any:
            call = _CALL.get()
            if call is not None:
                call.caller = current_identity() or ""
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            probed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
