"""Caller authentication and per-RPC permissions: mutual TLS, bearer tokens, the callers
file; and that a rejected call never reaches Redis."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import error_details
from totpd.api.server import RPC_NAMES
from totpd.callers import Callers
from totpd.v1 import totp_service_pb2 as pb

from .certs import ADMIN_DNS, WEB_SPIFFE, Pki
from .conftest import (
    ADMIN_RPCS,
    ADMIN_TOKEN,
    WEB_RPCS,
    WEB_TOKEN,
    StartServer,
    bearer,
    redis_snapshot,
)
from .rpcs import method, requests

TIMEOUT = 5.0


async def _rejected_untouched(
    running, call, request, code: grpc.StatusCode, **kwargs
) -> grpc.aio.AioRpcError:
    before = await redis_snapshot(running.redis)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request, timeout=TIMEOUT, **kwargs)
    assert raised.value.code() is code, raised.value
    assert await redis_snapshot(running.redis) == before
    return raised.value


async def _events(running) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await running.redis.xrange("totpd:events")]


# -- mutual TLS --------------------------------------------------------------------------


async def test_mtls_valid_and_permitted(start_server: StartServer, pki: Pki, callers: Callers):
    running = await start_server(tls="mutual", callers=callers)
    created = await running.stub(pki.web).CreateTotp(
        pb.CreateTotpRequest(user_id="alice", qr_code_size=64), timeout=TIMEOUT
    )
    assert created.totp_id
    deleted = await running.stub(pki.admin).DeleteTotp(
        pb.DeleteTotpRequest(user_id="alice", totp_id=created.totp_id), timeout=TIMEOUT
    )
    assert deleted.deleted
    # The audit stream names the certificate identity of each caller.
    assert [(e[b"type"], e[b"caller"].decode()) for e in await _events(running)] == [
        (b"totp.create", WEB_SPIFFE),
        (b"totp.delete", ADMIN_DNS),
    ]


async def test_without_a_callers_file_audit_events_name_the_certificate_or_no_one(
    start_server: StartServer, pki: Pki
):
    """Without a callers file anyone may call; the audit stream still names a client
    certificate's identity when the port is TLS, and no one on a plaintext port."""
    mutual = await start_server(tls="mutual")
    await mutual.stub(pki.web).CreateTotp(pb.CreateTotpRequest(user_id="alice"), timeout=TIMEOUT)
    plain = await start_server()
    await plain.stub().CreateTotp(pb.CreateTotpRequest(user_id="bob"), timeout=TIMEOUT)
    events = [(e[b"user_id"], e[b"caller"].decode()) for e in await _events(mutual)]
    assert events == [(b"alice", WEB_SPIFFE), (b"bob", "")]


@pytest.mark.parametrize("client", [None, "rogue_web", "expired_web"])
async def test_mtls_without_a_valid_certificate_fails_the_handshake(
    start_server: StartServer, pki: Pki, callers: Callers, client: str | None
):
    """No certificate, one from another CA, or an expired one: the TLS handshake fails,
    so no gRPC status can be sent; the client sees UNAVAILABLE and nothing is stored."""
    running = await start_server(tls="mutual", callers=callers)
    stub = running.stub(getattr(pki, client) if client else None)
    await _rejected_untouched(
        running,
        stub.CreateTotp,
        pb.CreateTotpRequest(user_id="alice"),
        grpc.StatusCode.UNAVAILABLE,
    )


async def test_mtls_certificate_naming_no_caller_is_unauthenticated(
    start_server: StartServer, pki: Pki, callers: Callers
):
    running = await start_server(tls="mutual", callers=callers)
    error = await _rejected_untouched(
        running,
        running.stub(pki.stranger).CreateTotp,
        pb.CreateTotpRequest(user_id="alice"),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert error_details(error).reason == "UNAUTHENTICATED"


async def test_mtls_caller_without_permission_is_denied(
    start_server: StartServer, pki: Pki, callers: Callers
):
    running = await start_server(tls="mutual", callers=callers)
    error = await _rejected_untouched(
        running,
        running.stub(pki.admin).CreateTotp,
        pb.CreateTotpRequest(user_id="alice"),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    details = error_details(error)
    assert (details.reason, details.domain) == ("PERMISSION_DENIED", "totpd")


async def test_server_tls_without_client_ca_accepts_tokens(
    start_server: StartServer, pki: Pki, callers: Callers
):
    running = await start_server(tls="server", callers=callers)
    stub = running.stub()
    await stub.GetTotp(pb.GetTotpRequest(user_id="alice"), metadata=bearer(WEB_TOKEN))
    await _rejected_untouched(
        running,
        stub.CreateTotp,
        pb.CreateTotpRequest(user_id="alice"),
        grpc.StatusCode.UNAUTHENTICATED,
    )


# -- bearer tokens -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        bearer("not-a-token"),
        bearer(WEB_TOKEN + "x"),
        bearer(WEB_TOKEN[:-1]),
        (("authorization", f"Basic {WEB_TOKEN}"),),
        (("authorization", WEB_TOKEN),),
        (("authorization", "Bearer "),),
        (("authorization", f"Bearer {WEB_TOKEN}"), ("authorization", f"Bearer {WEB_TOKEN}")),
        (("x-token", WEB_TOKEN),),
    ],
    ids=[
        "none",
        "unknown",
        "longer",
        "shorter",
        "basic",
        "no-scheme",
        "empty",
        "twice",
        "other-header",
    ],
)
async def test_bad_tokens_are_unauthenticated(
    start_server: StartServer, callers: Callers, metadata
):
    running = await start_server(callers=callers)
    error = await _rejected_untouched(
        running,
        running.stub().CreateTotp,
        pb.CreateTotpRequest(user_id="alice"),
        grpc.StatusCode.UNAUTHENTICATED,
        metadata=metadata,
    )
    details = error_details(error)
    assert (details.reason, details.domain) == ("UNAUTHENTICATED", "totpd")
    assert WEB_TOKEN not in details.message


async def test_a_valid_token_is_the_caller_and_names_it_in_audit_events(
    start_server: StartServer, callers: Callers
):
    running = await start_server(callers=callers)
    created = await running.stub().CreateTotp(
        pb.CreateTotpRequest(user_id="alice", qr_code_size=64),
        metadata=(("authorization", f"bearer {WEB_TOKEN}"),),  # the scheme is case-blind
        timeout=TIMEOUT,
    )
    assert created.totp_id
    assert [e[b"caller"] for e in await _events(running)] == [b"web"]


async def test_a_bad_token_fails_even_next_to_a_valid_certificate(
    start_server: StartServer, pki: Pki, callers: Callers
):
    running = await start_server(tls="mutual", callers=callers)
    await _rejected_untouched(
        running,
        running.stub(pki.web).CreateTotp,
        pb.CreateTotpRequest(user_id="alice"),
        grpc.StatusCode.UNAUTHENTICATED,
        metadata=bearer("wrong"),
    )


# -- permissions per RPC -----------------------------------------------------------------


@pytest.mark.parametrize("rpc", RPC_NAMES)
@pytest.mark.parametrize(
    ("token", "granted"), [(WEB_TOKEN, WEB_RPCS), (ADMIN_TOKEN, ADMIN_RPCS)], ids=["web", "admin"]
)
async def test_permissions_per_rpc(
    start_server: StartServer, callers: Callers, rpc: str, token: str, granted: tuple[str, ...]
):
    running = await start_server(callers=callers)
    call = method(running.stub(), rpc)
    request = requests()[rpc]
    if rpc in granted:
        try:
            await call(request, metadata=bearer(token), timeout=TIMEOUT)
        except grpc.aio.AioRpcError as error:  # e.g. NOT_FOUND: the user has nothing yet
            assert error.code() not in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            )
    else:
        await _rejected_untouched(
            running, call, request, grpc.StatusCode.PERMISSION_DENIED, metadata=bearer(token)
        )


@pytest.mark.parametrize("rpc", RPC_NAMES)
async def test_every_rpc_needs_credentials(start_server: StartServer, callers: Callers, rpc):
    running = await start_server(callers=callers)
    await _rejected_untouched(
        running,
        method(running.stub(), rpc),
        requests()[rpc],
        grpc.StatusCode.UNAUTHENTICATED,
    )


# -- what stays open ---------------------------------------------------------------------


async def test_health_stays_open(start_server: StartServer, pki: Pki, callers: Callers):
    running = await start_server(tls="server", callers=callers)
    health = health_pb2_grpc.HealthStub(running.channel())
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_is_off_unless_enabled(start_server: StartServer, callers: Callers):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async def list_services(running) -> grpc.StatusCode | list[str]:
        stub = reflection_pb2_grpc.ServerReflectionStub(running.channel())
        call = stub.ServerReflectionInfo(timeout=TIMEOUT)
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        await call.done_writing()
        try:
            replies = [r async for r in call]
        except grpc.aio.AioRpcError as error:
            return error.code()
        return [s.name for s in replies[0].list_services_response.service]

    off = await start_server(callers=callers)
    assert await list_services(off) is grpc.StatusCode.UNIMPLEMENTED
    on = await start_server(callers=callers, reflection=True)
    assert "totpd.v1.TotpService" in await list_services(on)
