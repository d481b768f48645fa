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

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler  # health, reflection, or unknown (UNIMPLEMENTED)
        return self.wrap(method[len(self._prefix) :], handler)

    def wrap(self, rpc: str, handler: Handler) -> Handler:
        """The handler to run instead of ``handler`` for TotpService method ``rpc``."""
        raise NotImplementedError
