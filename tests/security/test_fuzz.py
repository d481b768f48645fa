"""A property-based fuzz of every RPC through a real server: whatever the fields hold, the
answer is a deliberate status (never UNKNOWN or INTERNAL), nothing is logged as an
unexpected error, and the server keeps serving."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from totpd.api.server import RPC_NAMES
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

from .conftest import Running, StartServer

INT32 = st.integers(-(2**31), 2**31 - 1)
FD = pb_descriptor.FieldDescriptor
_INTERESTING = [
    "",
    "alice",
    "123456",
    "12345678",
    "١٢٣٤٥٦",  # Arabic-Indic digits
    "１２３４５６",  # fullwidth digits
    " 123456",
    "+123456",
    "-12345",
    "abcd-efgh-ijkl",
    "totp-0123456789abcdef0123456789abcdef",
    "a:b",
    "\x00",
    "\u202e",
    "x" * 300,
]
_TEXT = st.one_of(
    st.sampled_from(_INTERESTING),
    st.text(max_size=80),
    st.text(alphabet="0123456789", min_size=0, max_size=10),
)


def _field(field: FD) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        assert field.message_type.full_name == "google.protobuf.Duration"
        return st.builds(
            duration_pb2.Duration,
            seconds=st.one_of(st.sampled_from([0, 30, 60, -30]), st.integers(-(2**40), 2**40)),
            nanos=st.one_of(st.just(0), st.integers(-999_999_999, 999_999_999)),
        )
    if field.type == FD.TYPE_STRING:
        return _TEXT
    if field.type in (FD.TYPE_INT32, FD.TYPE_ENUM):
        return st.one_of(st.integers(-3, 1500), INT32)
    raise AssertionError(f"no strategy for {field.full_name}")


def requests_of(message: type[Message]) -> st.SearchStrategy[Message]:
    """Requests whose every field is set or not, to anything its type allows."""
    fields = {f.name: st.one_of(st.none(), _field(f)) for f in message.DESCRIPTOR.fields}

    def build(values: dict[str, Any]) -> Message:
        return message(**{k: v for k, v in values.items() if v is not None})

    return st.fixed_dictionaries(fields).map(build)


_DELIBERATE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
}


@pytest.fixture
async def fuzz_server(start_server: StartServer, caplog: pytest.LogCaptureFixture) -> Running:
    caplog.set_level(logging.WARNING)
    return await start_server()


@pytest.mark.parametrize("rpc", RPC_NAMES)
@settings(
    max_examples=50,
    deadline=None,
    database=None,  # nothing written to the work tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_every_rpc_answers_deliberately(
    fuzz_server: Running, caplog: pytest.LogCaptureFixture, rpc: str, data: st.DataObject
) -> None:
    request_type = getattr(pb, f"{rpc}Request")
    request = data.draw(requests_of(request_type))
    stub = _stub(fuzz_server)
    try:
        await getattr(stub, rpc)(request, timeout=10)
    except grpc.aio.AioRpcError as error:
        assert error.code() in _DELIBERATE, (error.code(), error.details(), request)
    unexpected = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert unexpected == []


def _stub(running: Running) -> pb_grpc.TotpServiceStub:
    """One channel for every example of a test."""
    channel = running.channels[0] if running.channels else running.channel()
    return pb_grpc.TotpServiceStub(channel)


@pytest.mark.parametrize("rpc", RPC_NAMES)
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=st.one_of(st.binary(max_size=200), st.sampled_from([b"\xff\xff\xff", b"\x0a\xff"])))
async def test_every_rpc_answers_arbitrary_bytes_deliberately(
    fuzz_server: Running, caplog: pytest.LogCaptureFixture, rpc: str, raw: bytes
) -> None:
    """Bytes that may not even be protobuf: INVALID_ARGUMENT (or whatever the message they
    happen to decode to deserves), never UNKNOWN with a parser's exception text."""
    channel = fuzz_server.channels[0] if fuzz_server.channels else fuzz_server.channel()
    call = channel.unary_unary(f"/totpd.v1.TotpService/{rpc}")
    try:
        await call(raw, timeout=10)
    except grpc.aio.AioRpcError as error:
        assert error.code() in _DELIBERATE, (error.code(), error.details(), raw)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
