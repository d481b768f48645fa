"""The leak scan: drive every RPC (successes, failures, replays, bad input, rejected
credentials) with DEBUG logging on, then search every log line, every error a client got
(message and details), the audit stream and a full dump of Redis for the secrets, codes,
recovery codes, otpauth URIs and bearer tokens that were used. Zero hits."""

from __future__ import annotations

import base64
import logging
import re

import grpc
import pytest
import redis.asyncio as aioredis

from tests.helpers import totp_code
from totpd.callers import Callers
from totpd.v1 import totp_service_pb2 as pb

from .conftest import ADMIN_TOKEN, WEB_TOKEN, StartServer, bearer


class _Calls:
    """Calls RPCs, keeping every error a client saw."""

    def __init__(self, stub, token: str) -> None:
        self.stub = stub
        self.metadata = bearer(token)
        self.errors: list[str] = []

    async def __call__(self, rpc: str, request, *, metadata=None):
        try:
            return await getattr(self.stub, rpc)(
                request, metadata=self.metadata if metadata is None else metadata, timeout=10
            )
        except grpc.aio.AioRpcError as error:
            self.errors.append(f"{error.code()} {error.details()}")
            for key, value in error.trailing_metadata() or ():
                self.errors.append(f"{key}={value!r}")
            self.errors.append(repr(error.debug_error_string()))
            return None


async def _redis_dump(client: aioredis.Redis) -> list[bytes]:
    """Every key, and every value in every structure, plus each key's DUMP."""
    out: list[bytes] = []
    async for key in client.scan_iter(count=1000):
        out.append(key)
        out.append(await client.dump(key) or b"")
        kind = (await client.type(key)).decode()
        if kind == "hash":
            out += [b for kv in (await client.hgetall(key)).items() for b in kv]
        elif kind == "set":
            out += list(await client.smembers(key))
        elif kind == "zset":
            out += [m for m, _ in await client.zrange(key, 0, -1, withscores=True)]
        elif kind == "string":
            out.append(await client.get(key) or b"")
        elif kind == "stream":
            for _, fields in await client.xrange(key):
                out += [b for kv in fields.items() for b in kv]
    return out


def _needles(secret_values: list[str], codes: list[str]) -> list[tuple[str, re.Pattern[bytes]]]:
    needles: list[tuple[str, re.Pattern[bytes]]] = []
    for value in secret_values:
        needles.append((value, re.compile(re.escape(value.encode()))))
    for code in codes:  # digits alone: only as a whole number, not inside a longer one
        needles.append((code, re.compile(rb"(?<![0-9])" + code.encode() + rb"(?![0-9])")))
    return needles


async def test_nothing_secret_in_logs_errors_audit_or_redis(
    start_server: StartServer,
    callers: Callers,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    running = await start_server(callers=callers)
    clock = running.clock
    call = _Calls(running.stub(), WEB_TOKEN)
    admin = _Calls(running.stub(), ADMIN_TOKEN)
    secrets_seen: list[str] = [WEB_TOKEN, ADMIN_TOKEN]
    codes_seen: list[str] = []

    def remember(created) -> None:
        raw = base64.b32decode(created.secret + "=" * (-len(created.secret) % 8))
        secrets_seen.extend([created.secret, created.otpauth_uri, created.qr_code.data_uri])
        secrets_seen.append(base64.b64encode(raw).decode())
        secrets_seen.extend(created.recovery_codes)
        secrets_seen.extend(c.replace("-", "") for c in created.recovery_codes)

    # Enroll, with an idempotent retry, and a second pending enrollment.
    request = pb.CreateTotpRequest(user_id="leak-user", request_id="r-1", qr_code_size=64)
    created = await call("CreateTotp", request)
    remember(created)
    await call("CreateTotp", request)
    await call(
        "CreateTotp",
        pb.CreateTotpRequest(
            user_id="leak-user", request_id="r-1", issuer="Other", qr_code_size=64
        ),
    )
    other = await call("CreateTotp", pb.CreateTotpRequest(user_id="leak-user", qr_code_size=64))
    remember(other)

    def code(at: float) -> str:
        value = totp_code(created.secret, at)
        codes_seen.append(value)
        return value

    wrong = "000000" if code(clock.now) != "000000" else "111111"
    codes_seen.append(wrong)
    activate = pb.ActivateTotpRequest(user_id="leak-user", totp_id=created.totp_id)
    activate.code = wrong
    await call("ActivateTotp", activate)
    activate.code = code(clock.now)
    await call("ActivateTotp", activate)
    await call("ActivateTotp", activate)  # no longer pending

    clock.advance(30)
    good = code(clock.now)
    await call("VerifyTotp", pb.VerifyTotpRequest(user_id="leak-user", code=good))
    await call("VerifyTotp", pb.VerifyTotpRequest(user_id="leak-user", code=good))  # replay
    await call("VerifyTotp", pb.VerifyTotpRequest(user_id="leak-user", code=wrong))
    await call("VerifyTotp", pb.VerifyTotpRequest(user_id="leak-user", code=good + "\n"))
    await call("VerifyTotp", pb.VerifyTotpRequest(user_id="nobody", code=good))

    await call(
        "UseRecoveryCode",
        pb.UseRecoveryCodeRequest(user_id="leak-user", recovery_code=created.recovery_codes[0]),
    )
    await call(  # used already
        "UseRecoveryCode",
        pb.UseRecoveryCodeRequest(user_id="leak-user", recovery_code=created.recovery_codes[0]),
    )
    await call(  # another user's code
        "UseRecoveryCode",
        pb.UseRecoveryCodeRequest(user_id="nobody", recovery_code=created.recovery_codes[1]),
    )
    regenerated = await call(
        "RegenerateRecoveryCodes", pb.RegenerateRecoveryCodesRequest(user_id="leak-user")
    )
    secrets_seen.extend(regenerated.recovery_codes)
    await call(  # an old code, after regeneration
        "UseRecoveryCode",
        pb.UseRecoveryCodeRequest(user_id="leak-user", recovery_code=created.recovery_codes[2]),
    )
    # Lock the user out (failures past the threshold), then try a good code.
    for _ in range(6):
        await call("VerifyTotp", pb.VerifyTotpRequest(user_id="leak-user", code=wrong))
    clock.advance(30)
    await call("VerifyTotp", pb.VerifyTotpRequest(user_id="leak-user", code=code(clock.now)))
    await call("GetTotp", pb.GetTotpRequest(user_id="leak-user"))

    # Rejected credentials: a token that is almost right, and a permission denied.
    await call("GetTotp", pb.GetTotpRequest(user_id="leak-user"), metadata=bearer(WEB_TOKEN[:-1]))
    await admin("CreateTotp", pb.CreateTotpRequest(user_id="leak-user"))
    # Invalid input that carries secrets in the wrong fields.
    await call("VerifyTotp", pb.VerifyTotpRequest(user_id=created.secret + "\x00", code=good))
    await call(
        "CreateTotp",
        pb.CreateTotpRequest(user_id="x", issuer=created.otpauth_uri, account_name=created.secret),
    )
    await call(
        "UseRecoveryCode",
        pb.UseRecoveryCodeRequest(user_id="leak-user", recovery_code=created.secret * 10),
    )
    await admin("DeleteTotp", pb.DeleteTotpRequest(user_id="leak-user", totp_id=other.totp_id))
    await admin("DeleteTotp", pb.DeleteTotpRequest(user_id="leak-user"))

    # Every place a secret could end up.
    records = caplog.records
    assert records, "the server logged nothing: the scan would prove nothing"
    log_text = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in records
    )
    captured = capfd.readouterr()
    haystacks: dict[str, list[bytes]] = {
        "logs": [log_text.encode(), caplog.text.encode()],
        "stdout/stderr": [captured.out.encode(), captured.err.encode()],
        "errors": [e.encode() for e in call.errors + admin.errors],
        "redis": await _redis_dump(running.redis),
    }
    assert call.errors and haystacks["redis"]
    assert any(b"totp.verify" in blob for blob in haystacks["redis"])  # the audit stream
    needles = _needles(secrets_seen, codes_seen)
    # Positive control: the needles do find what a client legitimately received.
    response = created.SerializeToString()
    assert all(p.search(response) for name, p in needles if name in created.recovery_codes)
    assert any(p.search(response) for name, p in needles if name == created.otpauth_uri)
    hits = [
        (where, name)
        for name, pattern in needles
        for where, blobs in haystacks.items()
        if any(pattern.search(blob) for blob in blobs)
    ]
    assert hits == []
