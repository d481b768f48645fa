"""Fixtures of the security suite: a PKI made on the fly, a callers file, and servers
started with TLS, mutual TLS and/or caller authentication over the session's Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from tests.conftest import FakeClock
from totpd.api.server import RPC_NAMES, ServerTls, TransportLimits, create_server
from totpd.callers import Callers, hash_token
from totpd.keyring import Keyring
from totpd.service import Policy, TotpService
from totpd.store.redis_store import RedisStore
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

from .certs import ADMIN_DNS, WEB_SPIFFE, Issued, Pki

WEB_TOKEN = "web-token-4bW0m3P9v6Jr2Qz8XyLk1NcT5sHd7Ug0"
ADMIN_TOKEN = "admin-token-Z2x7Rk9Qp4Lm1Vb8Nc3Jt6Hy0Ws5Fd2"
WEB_RPCS = (
    "CreateTotp",
    "ActivateTotp",
    "VerifyTotp",
    "UseRecoveryCode",
    "RegenerateRecoveryCodes",
    "GetTotp",
)
ADMIN_RPCS = ("GetTotp", "DeleteTotp")

CALLERS_TOML = f"""
[callers.web]
tls_identities = ["{WEB_SPIFFE}"]
token_sha256 = ["{hash_token(WEB_TOKEN)}"]
rpcs = {list(WEB_RPCS)!r}

[callers.admin]
tls_identities = ["{ADMIN_DNS}"]
token_sha256 = ["{hash_token(ADMIN_TOKEN)}"]
rpcs = {list(ADMIN_RPCS)!r}
""".replace("'", '"')


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki.make()


@pytest.fixture(scope="session")
def callers() -> Callers:
    return Callers.parse(CALLERS_TOML, RPC_NAMES)


@dataclass
class Running:
    address: str
    port: int
    server: grpc.aio.Server
    redis: aioredis.Redis
    keyring: Keyring
    clock: FakeClock
    tls: ServerTls | None
    channels: list[grpc.aio.Channel]

    def channel(self, client: Issued | None = None, *, ca: bytes | None = None) -> grpc.aio.Channel:
        """A channel to the server: plaintext, or TLS (with ``client``'s certificate)."""
        if self.tls is None:
            channel = grpc.aio.insecure_channel(self.address)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=ca or self.tls_ca,
                private_key=client.key_pem if client else None,
                certificate_chain=client.cert_pem if client else None,
            )
            channel = grpc.aio.secure_channel(self.address, credentials)
        self.channels.append(channel)
        return channel

    def stub(self, client: Issued | None = None) -> pb_grpc.TotpServiceStub:
        return pb_grpc.TotpServiceStub(self.channel(client))

    tls_ca: bytes = b""


StartServer = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_server(
    redis_client: aioredis.Redis, clock: FakeClock, keyring: Keyring, pki: Pki
) -> AsyncIterator[StartServer]:
    started: list[Running] = []

    async def start(
        *,
        tls: str = "off",  # off | server | mutual
        callers: Callers | None = None,
        reflection: bool = False,
        limits: TransportLimits | None = None,
        store: Any = None,
        policy: Policy | None = None,
        keys: Keyring | None = None,
    ) -> Running:
        server_tls = None
        if tls != "off":
            server_tls = ServerTls(
                pki.server.cert_pem,
                pki.server.key_pem,
                pki.ca.cert_pem if tls == "mutual" else None,
            )
        service = TotpService(
            store or RedisStore(redis_client, prefix="totpd"),
            keys or keyring,
            policy or Policy(),
            clock=clock,
        )
        server, port = create_server(
            service,
            "127.0.0.1:0",
            reflection_enabled=reflection,
            tls=server_tls,
            callers=callers,
            limits=limits,
        )
        await server.start()
        running = Running(
            f"127.0.0.1:{port}", port, server, redis_client, keys or keyring, clock, server_tls, []
        )
        running.tls_ca = pki.ca.cert_pem
        started.append(running)
        return running

    yield start
    for running in started:
        for channel in running.channels:
            await channel.close()
        await running.server.stop(None)


async def redis_snapshot(client: aioredis.Redis) -> dict[bytes, bytes]:
    """Every key of the database with its serialized value (DUMP): equal snapshots mean
    nothing was written, not even an audit event."""
    snapshot: dict[bytes, bytes] = {}
    async for key in client.scan_iter(count=1000):
        value = await client.dump(key)
        if value is not None:
            snapshot[key] = value
    return snapshot


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
