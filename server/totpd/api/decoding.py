"""Requests are decoded, and checked against the proto's rules, before any handler runs.

Undecodable requests are answered INVALID_ARGUMENT, like any other invalid input.

gRPC would parse each request before the handler runs and answer bytes that are not the
request message with UNKNOWN and the parser's exception text. This interceptor takes the
request as bytes and parses it itself, so a malformed message gets a deliberate status
with an ``ErrorInfo`` (reason ``MALFORMED_REQUEST``) and no parser internals. A request
that breaks a ``buf.validate`` rule of the proto (``protovalidation``) is answered
INVALID_ARGUMENT with reason ``INVALID_REQUEST`` and ``BadRequest`` field violations.
"""

from __future__ import annotations

from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError

from ..errors import InvalidRequest
from .interception import Behavior, Handler, TotpServiceInterceptor
from .protovalidation import Check
from .status import abort, error_status, to_status

MALFORMED_REQUEST = "MALFORMED_REQUEST"


class DecodingInterceptor(TotpServiceInterceptor):
    def __init__(self, service_name: str, check: Check | None = None) -> None:
        super().__init__(service_name)
        self._check = check

    def wrap(self, rpc: str, handler: Handler) -> Handler:
        if handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        behavior = cast(Behavior, handler.unary_unary)
        parse = handler.request_deserializer

        async def decoding(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                request = parse(raw)
            except (DecodeError, ValueError, TypeError):
                status = error_status(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    MALFORMED_REQUEST,
                    "the request is not a valid protobuf message of this RPC",
                )
                await abort(context, status)
            violations = self._check(request) if self._check else []
            if violations:
                status = to_status(InvalidRequest(violations))
                await abort(context, status)
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            decoding, request_deserializer=None, response_serializer=handler.response_serializer
        )
