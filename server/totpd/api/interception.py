"""The common frame of totpd's interceptors: they act on TotpService calls only.

Health and reflection pass through untouched (they reveal nothing of any user); each
TotpService handler is handed to the interceptor's ``wrap`` with the RPC's short name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

# Strings: grpc's classes are generic only in its type stubs, not at run time.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Behavior: TypeAlias = "Callable[[Any, Context], Awaitable[Any]]"


class TotpServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service_name: str) -> None:
        self._prefix = f"/{service_name}/"
        # method -> (the handler grpc found, the one wrapped around it). grpc hands over
        # the same handler object for a method on every call: wrap it once, not per call.
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler  # health, reflection, or unknown (UNIMPLEMENTED)
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self.wrap(method[len(self._prefix) :], handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def wrap(self, rpc: str, handler: Handler) -> Handler:
        """The handler to run instead of ``handler`` for TotpService method ``rpc``."""
        raise NotImplementedError
