"""TotpClient against a live server: the whole flow, typed errors, deadlines and retries."""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
import threading
import time
import uuid
from base64 import b32decode
from collections import Counter
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from totpd.client import (
    InvalidCode,
    InvalidRequest,
    RequestIdAlreadyUsed,
    StoreUnavailable,
    TotpClient,
    TotpNotFound,
)

SERVICE = "totpd.v1.TotpService"


def code_at(secret: str, at: float, step_offset: int = 0) -> str:
    """RFC 6238 in a few lines, as a caller without a TOTP library would write it."""
    counter = int(at // 30) + step_offset
    mac = hmac.new(b32decode(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


@pytest.fixture
def client(address: str) -> Iterator[TotpClient]:
    with TotpClient(address) as c:
        yield c


@pytest.fixture
def user() -> str:
    return f"py-client-{uuid.uuid4().hex}"


def test_create_activate_verify_recover_delete(client: TotpClient, user: str) -> None:
    created = client.create_totp(user, account_name="alice@example.com")
    now = time.time()
    activated = client.activate_totp(user, created.totp_id, code_at(created.secret, now))
    assert activated.totp.totp_id == created.totp_id

    verified = client.verify_totp(user, code_at(created.secret, now, step_offset=1))
    assert verified.totp_id == created.totp_id
    with pytest.raises(InvalidCode) as reused:
        client.verify_totp(user, code_at(created.secret, now, step_offset=1))
    assert reused.value.reason == "INVALID_CODE"
    assert reused.value.code == grpc.StatusCode.INVALID_ARGUMENT

    used = client.use_recovery_code(user, created.recovery_codes[0].upper())
    assert used.recovery_codes_remaining == 9
    assert client.get_totp(user).active_totp.totp_id == created.totp_id
    assert client.delete_totp(user).deleted
    with pytest.raises(TotpNotFound):
        client.verify_totp(user, "123456")


def test_create_sends_a_request_id_so_retries_are_idempotent(client: TotpClient, user: str) -> None:
    first = client.create_totp(user, request_id="fixed")
    again = client.create_totp(user, request_id="fixed")
    assert (again.totp_id, again.secret) == (first.totp_id, first.secret)
    with pytest.raises(RequestIdAlreadyUsed):
        client.create_totp(user, request_id="fixed", digits=8)
    # Without one, the client makes a fresh id: two calls, two enrollments.
    assert client.create_totp(user).totp_id != client.create_totp(user).totp_id


def test_invalid_request_carries_the_field_violations(client: TotpClient) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client.activate_totp("", "totp-x", "12a456")
    assert caught.value.reason == "INVALID_REQUEST"
    assert set(caught.value.field_violations) == {"user_id", "code"}


class _Blackhole:
    """A TCP listener that accepts and never answers: calls to it can only time out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self._conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


def test_every_call_has_a_deadline() -> None:
    hole = _Blackhole()
    try:
        with TotpClient(hole.address, timeout=0.3, retries=0) as c:
            started = time.monotonic()
            with pytest.raises(Exception) as caught:
                c.verify_totp("alice", "123456")
            assert time.monotonic() - started < 5
            assert caught.value.code in (  # type: ignore[attr-defined]
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.UNAVAILABLE,
            )
    finally:
        hole.close()


def test_unavailable_is_retried_only_for_safe_calls() -> None:
    # A stand-in server that answers every call UNAVAILABLE and counts what reaches it.
    attempts: Counter[str] = Counter()

    def unavailable(name: str) -> grpc.RpcMethodHandler:
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            attempts[name] += 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "try later")
            raise AssertionError("unreachable")

        return grpc.unary_unary_rpc_method_handler(handle)

    names = ["GetTotp", "DeleteTotp", "CreateTotp", "VerifyTotp", "ActivateTotp"]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {n: unavailable(n) for n in names})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with TotpClient(f"127.0.0.1:{port}", timeout=2, retries=2, backoff=0.01) as c:
            for call in (
                lambda: c.get_totp("alice"),
                lambda: c.delete_totp("alice"),
                lambda: c.create_totp("alice"),
                lambda: c.verify_totp("alice", "123456"),
                lambda: c.activate_totp("alice", "totp-x", "123456"),
            ):
                with pytest.raises(StoreUnavailable):
                    call()
    finally:
        server.stop(None)
    # Safe calls: 1 + 2 retries. Code checks: once, since a check may have counted.
    assert attempts == Counter(GetTotp=3, DeleteTotp=3, CreateTotp=3, VerifyTotp=1, ActivateTotp=1)
