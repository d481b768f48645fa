"""totpd talks to Redis over TLS as an ACL user (``rediss://user:password@host:port``),
with a real TLS handshake that verifies the server's certificate against a configured CA.

The embedded redis-server has no TLS, so a TLS-terminating proxy (``tls_proxy.py``) sits
in front of a Redis of this module's own, whose only enabled users are the totpd ACL user
(the rules of docs/security.md, as in ``test_redis_acl.py``) and an admin the tests use
over the Unix socket. The proxy counts handshakes, so the tests know TLS really happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import totp_code
from tests.live_server import TotpdProcess
from totpd.api.server import SERVICE_NAME
from totpd.app import check_eviction_policy
from totpd.config import Settings
from totpd.embedded_redis import EmbeddedRedis
from totpd.errors import StoreUnavailable
from totpd.store.redis_store import RedisStore, connect
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

from .certs import Authority, Pki
from .conftest import StartServer
from .test_redis_acl import ACL_RULES
from .tls_proxy import TlsProxy, server_context

# Characters that must be percent-encoded in a URL, as real passwords may have them.
PASSWORD = "tls/acl:pw@7Gq2#Xv9%Lm4Rt"
WRONG_PASSWORD = "wrong-pw-3Hs8Kd1Np6Wz"
ADMIN_PASSWORD = "admin-pw-5Jc0Fb7Yt2Qe"
SECRETS = (PASSWORD, quote(PASSWORD, safe=""), WRONG_PASSWORD, ADMIN_PASSWORD)
CALL = 5.0  # every wait is bounded: a stall fails the test instead of hanging it


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # signed the proxy's certificate
    other_ca: Path  # a CA that signed nothing here
    server_cert: Path  # for 127.0.0.1 and localhost
    server_key: Path
    other_host_cert: Path  # from our CA, but for redis.example.test only
    other_host_key: Path
    client_cert: Path  # a client certificate from our CA (mutual TLS)
    client_key: Path


@pytest.fixture(scope="module")
def tls_files(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    directory = tmp_path_factory.mktemp("redis-tls")
    other_host = pki.ca.issue("redis", dns=("redis.example.test",), server=True)

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        return path

    return TlsFiles(
        ca=write("ca.pem", pki.ca.cert_pem),
        other_ca=write("other-ca.pem", Authority("another CA").cert_pem),
        server_cert=write("server.pem", pki.server.cert_pem),
        server_key=write("server.key", pki.server.key_pem),
        other_host_cert=write("other-host.pem", other_host.cert_pem),
        other_host_key=write("other-host.key", other_host.key_pem),
        client_cert=write("client.pem", pki.web.cert_pem),
        client_key=write("client.key", pki.web.key_pem),
    )


def admin_client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis(
        unix_socket_path=str(server.socket),
        username="admin",
        password=ADMIN_PASSWORD,
        socket_timeout=CALL,
    )


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A Redis of our own whose default user is off: only totpd (the documented ACL) and
    the tests' admin can do anything."""
    totpd_rules = [rule for rule in ACL_RULES if not rule.startswith(">")] + [f">{PASSWORD}"]
    with EmbeddedRedis(tmp_path_factory.mktemp("acl-redis"), appendonly=False) as server:
        with redis.Redis(unix_socket_path=str(server.socket), socket_timeout=CALL) as setup:
            setup.execute_command("ACL", "SETUSER", "totpd", "reset", *totpd_rules)
            setup.execute_command(
                "ACL", "SETUSER", "admin", "reset", "on", f">{ADMIN_PASSWORD}", "~*", "+@all"
            )
            setup.execute_command("ACL", "SETUSER", "default", "off")
        yield server


@pytest.fixture
def admin(acl_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    with admin_client(acl_redis) as client:
        client.flushall()
        yield client


StartProxy = Callable[..., TlsProxy]


@pytest.fixture
def tls_proxy(acl_redis: EmbeddedRedis, tls_files: TlsFiles, pki: Pki) -> Iterator[StartProxy]:
    """Start TLS proxies to ``acl_redis``: with the certificate for 127.0.0.1 (or one for
    another host), optionally requiring a client certificate. All stop at the end."""
    started: list[TlsProxy] = []

    def start(*, other_host: bool = False, mutual: bool = False) -> TlsProxy:
        cert, key = (
            (tls_files.other_host_cert, tls_files.other_host_key)
            if other_host
            else (tls_files.server_cert, tls_files.server_key)
        )
        context = server_context(cert, key, client_ca=pki.ca.cert_pem if mutual else None)
        proxy = TlsProxy(acl_redis.socket, context)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()


def rediss_url(
    proxy: TlsProxy,
    ca: Path,
    *,
    credentials: str = f"totpd:{quote(PASSWORD, safe='')}",
    client: tuple[Path, Path] | None = None,
) -> str:
    """The documented form: rediss://user:password@host:port/db?ssl_ca_certs=…
    (``credentials`` percent-encoded)."""
    query = f"ssl_ca_certs={quote(str(ca))}&ssl_cert_reqs=required"
    if client is not None:
        query += f"&ssl_certfile={quote(str(client[0]))}&ssl_keyfile={quote(str(client[1]))}"
    userinfo = f"{credentials}@" if credentials else ""
    return f"rediss://{userinfo}127.0.0.1:{proxy.port}/0?{query}"


def totpd_clients(admin: redis.Redis) -> list[dict]:
    return [c for c in admin.client_list() if c.get("user") == "totpd"]


# -- in process ------------------------------------------------------------------------


async def test_totpd_runs_over_tls_as_the_acl_user(
    start_server: StartServer, tls_proxy: StartProxy, tls_files: TlsFiles, admin: redis.Redis
) -> None:
    proxy = tls_proxy()
    store = RedisStore(connect(rediss_url(proxy, tls_files.ca)), prefix="totpd")
    try:
        await check_eviction_policy(store, Settings())  # INFO, as the ACL user, over TLS
        running = await start_server(store=store)
        stub, clock = running.stub(), running.clock
        created = await stub.CreateTotp(
            pb.CreateTotpRequest(user_id="tls", qr_code_size=64), timeout=CALL
        )
        activated = await stub.ActivateTotp(
            pb.ActivateTotpRequest(
                user_id="tls", totp_id=created.totp_id, code=totp_code(created.secret, clock.now)
            ),
            timeout=CALL,
        )
        assert activated.totp.totp_id == created.totp_id
        clock.advance(30)
        verified = await stub.VerifyTotp(
            pb.VerifyTotpRequest(user_id="tls", code=totp_code(created.secret, clock.now)),
            timeout=CALL,
        )
        assert verified.totp_id == created.totp_id

        # It went through the proxy's TLS, as the ACL user, into this Redis.
        accepted, handshakes, errors = proxy.stats()
        assert handshakes >= 1 and errors == []
        assert proxy.tls_versions <= {"TLSv1.2", "TLSv1.3"}
        assert totpd_clients(admin), "no connection authenticated as the totpd user"
        keys = admin.keys("*")
        assert keys and all(key.startswith(b"totpd:") for key in keys)
    finally:
        await store.close()


async def test_client_certificate_for_a_mutual_tls_redis(
    tls_proxy: StartProxy, tls_files: TlsFiles
) -> None:
    proxy = tls_proxy(mutual=True)
    client = (tls_files.client_cert, tls_files.client_key)
    store = RedisStore(connect(rediss_url(proxy, tls_files.ca, client=client)), prefix="totpd")
    try:
        assert await asyncio.wait_for(store.ping(), CALL)
        assert await asyncio.wait_for(store.eviction_policy(), CALL) == "noeviction"
    finally:
        await store.close()
    assert proxy.stats()[1] >= 1


# -- refusals --------------------------------------------------------------------------

# (proxy options, URL options, what the client's error or the proxy's failed handshake
# says, to show the refusal was for the reason under test)
REFUSALS = {
    "unknown CA": ({}, {"ca": "other_ca"}, "CERTIFICATE_VERIFY_FAILED"),
    "certificate for another host": ({"other_host": True}, {}, "CERTIFICATE_VERIFY_FAILED"),
    "wrong password": ({}, {"credentials": f"totpd:{WRONG_PASSWORD}"}, "AuthenticationError"),
    "no credentials": ({}, {"credentials": ""}, "Authentication"),
    "no client certificate": ({"mutual": True}, {}, "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
}


def _everything_said(exc: BaseException) -> str:
    """Every message and repr along the exception's chain, and its formatted traceback."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_refused_tls_or_credentials_mean_unavailable_without_leaking(
    case: str,
    start_server: StartServer,
    tls_proxy: StartProxy,
    tls_files: TlsFiles,
    admin: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy_options, url_options, reason = REFUSALS[case]
    caplog.set_level(logging.DEBUG)
    proxy = tls_proxy(**proxy_options)
    options = dict(url_options)
    ca = getattr(tls_files, str(options.pop("ca", "ca")))
    url = rediss_url(proxy, ca, **options)
    store = RedisStore(connect(url, timeout=1.0), prefix="totpd")
    began = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable) as failure:
            await asyncio.wait_for(store.ping(), CALL)
        running = await start_server(store=store)
        with pytest.raises(grpc.aio.AioRpcError) as rpc:
            await running.stub().CreateTotp(pb.CreateTotpRequest(user_id="tls"), timeout=CALL)
    finally:
        await store.close()
    assert time.monotonic() - began < CALL  # refused promptly, not by a timeout
    assert rpc.value.code() == grpc.StatusCode.UNAVAILABLE

    said = _everything_said(failure.value)
    accepted, handshakes, errors = proxy.stats()
    assert reason in "\n".join([said, *errors]), (said, errors)
    assert accepted >= 1  # it did reach the proxy
    if "credentials" in url_options:
        assert handshakes >= 1  # TLS was fine, Redis refused the user
    else:
        assert handshakes == 0 and errors  # the TLS handshake failed

    everything = "\n".join(
        [
            said,
            str(rpc.value.details()),
            repr(rpc.value.trailing_metadata()),
            caplog.text,
            *(record.getMessage() for record in caplog.records),
            *(
                _everything_said(r.exc_info[1])
                for r in caplog.records
                if r.exc_info and r.exc_info[1]
            ),
        ]
    )
    for secret in SECRETS:
        assert secret not in everything
    assert not totpd_clients(admin)
    assert admin.keys("*") == []


# -- black box -------------------------------------------------------------------------


def test_python_m_totpd_over_rediss(
    tls_proxy: StartProxy, tls_files: TlsFiles, admin: redis.Redis, tmp_path: Path
) -> None:
    proxy = tls_proxy()
    server = TotpdProcess(
        tmp_path / "totpd", REDIS_URL=rediss_url(proxy, tls_files.ca), LOG_LEVEL="DEBUG"
    )
    try:
        address = server.start()
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=CALL
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.TotpServiceStub(channel)
            created = stub.CreateTotp(
                pb.CreateTotpRequest(user_id="tls-bb", qr_code_size=64), timeout=CALL
            )
            stub.ActivateTotp(
                pb.ActivateTotpRequest(
                    user_id="tls-bb",
                    totp_id=created.totp_id,
                    code=totp_code(created.secret, time.time()),
                ),
                timeout=CALL,
            )
            got = stub.GetTotp(pb.GetTotpRequest(user_id="tls-bb"), timeout=CALL)
            assert got.active_totp.totp_id == created.totp_id
            assert totpd_clients(admin)
    finally:
        code = server.stop()
    assert code == 0, server.log
    assert proxy.stats()[1] >= 1
    assert admin.keys("totpd:*")
    for secret in SECRETS:
        assert secret not in server.log


@pytest.mark.parametrize("case", list(REFUSALS))
def test_python_m_totpd_refuses_to_start_without_leaking(
    case: str, tls_proxy: StartProxy, tls_files: TlsFiles, tmp_path: Path
) -> None:
    proxy_options, url_options, reason = REFUSALS[case]
    proxy = tls_proxy(**proxy_options)
    options = dict(url_options)
    ca = getattr(tls_files, str(options.pop("ca", "ca")))
    server = TotpdProcess(tmp_path / "totpd", REDIS_URL=rediss_url(proxy, ca, **options))
    server.spawn()
    code = server.wait(2 * CALL)
    server.stop()
    assert code not in (None, 0), server.log
    # Why, as the operator (or, for a missing client certificate, the server) sees it.
    assert reason in "\n".join([server.log, *proxy.stats()[2]])
    assert proxy.stats()[0] >= 1
    for secret in SECRETS:
        assert secret not in server.log
