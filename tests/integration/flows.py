"""Shared steps of the integration tests of an active TOTP's lifecycle (issue #3).

Everything goes through the generated stub against the real server and Redis; codes are
computed from the returned secret the way an authenticator app does, at the server's
injected clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterable

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf import timestamp_pb2

from tests.conftest import FakeClock, Totpd
from tests.helpers import RpcErrorDetails, error_details, totp_code
from totpd.api.server import create_server
from totpd.keyring import Keyring
from totpd.service import Policy, TotpService
from totpd.store.redis_store import RedisStore
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

# The smallest QR code CreateTotp accepts: these tests never look at it, so keep it cheap.
_QR_SIZE = 64
EVENTS_KEY = "totpd:events"
STEP = 30  # the default time step, in seconds

# (status code, ErrorInfo.reason) of the errors these tests expect.
INVALID_CODE = (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CODE")
LOCKED = (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_ATTEMPTS")
TOTP_NOT_FOUND = (grpc.StatusCode.NOT_FOUND, "TOTP_NOT_FOUND")


async def create(totpd: Totpd, user_id: str, **fields: object) -> pb.CreateTotpResponse:
    """A pending enrollment, created at ``totpd.clock.now``."""
    request = pb.CreateTotpRequest(user_id=user_id, qr_code_size=_QR_SIZE, **fields)
    return await totpd.stub.CreateTotp(request)


async def activate(totpd: Totpd, created: pb.CreateTotpResponse) -> pb.ActivateTotpResponse:
    """Activate ``created`` with the code its app shows at ``totpd.clock.now``."""
    return await totpd.stub.ActivateTotp(
        pb.ActivateTotpRequest(
            user_id=created.user_id,
            totp_id=created.totp_id,
            code=totp_code(created.secret, totpd.clock.now),
        )
    )


async def enroll(totpd: Totpd, user_id: str, **fields: object) -> pb.CreateTotpResponse:
    """Create and activate a TOTP at ``totpd.clock.now``; the activation code's time step
    is then used up, so the next code VerifyTotp accepts is one of a later step."""
    created = await create(totpd, user_id, **fields)
    await activate(totpd, created)
    return created


async def verify(totpd: Totpd, user_id: str, code: str) -> pb.VerifyTotpResponse:
    return await totpd.stub.VerifyTotp(pb.VerifyTotpRequest(user_id=user_id, code=code))


async def verify_at(
    totpd: Totpd, enrolled: pb.CreateTotpResponse, at: float
) -> pb.VerifyTotpResponse:
    """VerifyTotp with the code the user's app shows at time ``at``."""
    return await verify(totpd, enrolled.user_id, totp_code(enrolled.secret, at))


def wrong_code(enrolled: pb.CreateTotpResponse, now: float) -> str:
    """A well-formed code that no step within two steps of ``now`` produces."""
    near = {totp_code(enrolled.secret, now + k * STEP) for k in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in near)


async def fail_verify(totpd: Totpd, enrolled: pb.CreateTotpResponse) -> RpcErrorDetails:
    """One VerifyTotp with a wrong code; returns how it failed."""
    return await rpc_error(verify(totpd, enrolled.user_id, wrong_code(enrolled, totpd.clock.now)))


async def use_recovery_code(totpd: Totpd, user_id: str, code: str) -> pb.UseRecoveryCodeResponse:
    return await totpd.stub.UseRecoveryCode(
        pb.UseRecoveryCodeRequest(user_id=user_id, recovery_code=code)
    )


async def get(totpd: Totpd, user_id: str) -> pb.GetTotpResponse:
    return await totpd.stub.GetTotp(pb.GetTotpRequest(user_id=user_id))


async def rpc_error(call: Awaitable[object]) -> RpcErrorDetails:
    """Await a call that must fail; its status code and google.rpc details."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return error_details(caught.value)


async def outcomes(calls: Iterable[Awaitable[object]]) -> list[str]:
    """Run calls concurrently; 'OK' for each success, else its ErrorInfo reason."""

    async def one(call: Awaitable[object]) -> str:
        try:
            await call
        except grpc.aio.AioRpcError as error:
            return error_details(error).reason
        return "OK"

    return list(await asyncio.gather(*(one(c) for c in calls)))


def seconds(ts: timestamp_pb2.Timestamp) -> float:
    """A Timestamp as float seconds since the epoch (exact for the clock's instants)."""
    return ts.ToNanoseconds() / 1e9


async def events(redis: aioredis.Redis) -> list[dict[str, str]]:
    """The audit events in the Redis stream, oldest first."""
    entries = await redis.xrange(EVENTS_KEY)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def dump_redis(redis: aioredis.Redis) -> list[bytes]:
    """Every key name and every value stored in Redis, whatever the key's type."""
    out: list[bytes] = []
    async for key in redis.scan_iter(count=1000):
        out.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "string":
            out.append(await redis.get(key))
        elif kind == "hash":
            for field, value in (await redis.hgetall(key)).items():
                out += [field, value]
        elif kind == "set":
            out += list(await redis.smembers(key))
        elif kind == "zset":
            for member, score in await redis.zrange(key, 0, -1, withscores=True):
                out += [member, repr(score).encode()]
        elif kind == "list":
            out += list(await redis.lrange(key, 0, -1))
        elif kind == "stream":
            for entry_id, fields in await redis.xrange(key):
                out.append(entry_id)
                for field, value in fields.items():
                    out += [field, value]
        else:
            raise AssertionError(f"unexpected Redis type {kind} of {key!r}")
    return out


def secret_forms(created: pb.CreateTotpResponse) -> list[bytes]:
    """The enrollment's secret in every form it could leak in, and its recovery codes both
    as shown and canonical (lower case, no dashes)."""
    raw = base64.b32decode(created.secret + "=" * (-len(created.secret) % 8))
    forms = [
        created.secret.encode(),
        created.secret.lower().encode(),
        raw,
        raw.hex().encode(),
        base64.b64encode(raw),
        created.otpauth_uri.encode(),
    ]
    for code in created.recovery_codes:
        forms += [code.encode(), code.replace("-", "").encode()]
    return [form for form in forms if form]


@contextlib.asynccontextmanager
async def own_server(
    redis: aioredis.Redis, keyring: Keyring, clock: FakeClock, policy: Policy | None = None
) -> AsyncIterator[Totpd]:
    """A totpd server with its own store over ``redis``, which this block starts and stops
    (the ``start_totpd`` fixture only stops its servers at teardown)."""
    store = RedisStore(redis, prefix="totpd")
    service = TotpService(store, keyring, policy or Policy(), clock)
    server, port = create_server(service, "127.0.0.1:0")
    await server.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        stub = pb_grpc.TotpServiceStub(channel)
        yield Totpd(stub, channel, address, redis, store, service, clock, keyring)
    finally:
        await channel.close()
        await server.stop(None)
