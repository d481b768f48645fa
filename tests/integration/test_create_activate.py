"""CreateTotp and ActivateTotp against a real Redis and a real server (issue: the core).

Codes are computed from the returned secret the way an authenticator app does, at the
server's injected clock.
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
import time
from collections import Counter

import grpc
import PIL.Image
import pytest
import zxingcpp
from google.protobuf import duration_pb2

from tests.conftest import Totpd
from tests.helpers import error_details, totp_code
from totpd.v1 import totp_service_pb2 as pb

RECOVERY_CODE = re.compile(r"[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}\Z")


async def create(totpd: Totpd, user_id: str = "alice", **fields: object) -> pb.CreateTotpResponse:
    return await totpd.stub.CreateTotp(pb.CreateTotpRequest(user_id=user_id, **fields))


async def activate(
    totpd: Totpd, created: pb.CreateTotpResponse, code: str | None = None, user_id: str = ""
) -> pb.ActivateTotpResponse:
    return await totpd.stub.ActivateTotp(
        pb.ActivateTotpRequest(
            user_id=user_id or created.user_id,
            totp_id=created.totp_id,
            code=code or totp_code(created.secret, totpd.clock.now),
        )
    )


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def decode_qr(image: bytes) -> str:
    results = zxingcpp.read_barcodes(PIL.Image.open(io.BytesIO(image)))
    assert len(results) == 1
    return results[0].text


async def all_redis_bytes(totpd: Totpd) -> bytes:
    """Every key and value in Redis, whatever its type, as one blob to search."""
    out = bytearray()
    async for key in totpd.redis.scan_iter():
        out += key
        kind = (await totpd.redis.type(key)).decode()
        if kind == "string":
            out += await totpd.redis.get(key)
        elif kind == "hash":
            for f, v in (await totpd.redis.hgetall(key)).items():
                out += f + v
        elif kind == "set":
            out += b"".join(await totpd.redis.smembers(key))
        elif kind == "zset":
            out += b"".join(await totpd.redis.zrange(key, 0, -1))
        elif kind == "stream":
            for _id, fields in await totpd.redis.xrange(key):
                for f, v in fields.items():
                    out += f + v
        else:
            raise AssertionError(f"unexpected key type {kind}")
    return bytes(out)


# -- the happy path -----------------------------------------------------------------------


async def test_create_returns_a_complete_pending_enrollment(totpd: Totpd) -> None:
    created = await create(totpd, "alice@example.com")

    assert created.user_id == "alice@example.com"
    assert created.totp_id.startswith("totp-")
    assert re.fullmatch(r"[A-Z2-7]{32}", created.secret)
    assert len(base64.b32decode(created.secret)) == 20
    assert created.otpauth_uri == (
        f"otpauth://totp/totpd:alice%40example.com?secret={created.secret}&issuer=totpd"
    )
    assert len(created.recovery_codes) == 10 == len(set(created.recovery_codes))
    assert all(RECOVERY_CODE.match(c) for c in created.recovery_codes)
    assert created.expire_time.ToSeconds() == int(totpd.clock.now) + 1440 * 60
    assert created.totp.state == pb.TOTP_STATE_PENDING
    assert (created.totp.algorithm, created.totp.digits) == (pb.TOTP_ALGORITHM_SHA1, 6)
    assert created.totp.period.seconds == 30
    assert created.totp.account_name == "alice@example.com"


async def test_qr_code_decodes_to_exactly_the_otpauth_uri(totpd: Totpd) -> None:
    created = await create(totpd, "bob", issuer="Example Corp", account_name="bob@example.com")

    qr = created.qr_code
    assert qr.mime_type == "image/png"
    assert qr.image.startswith(b"\x89PNG\r\n\x1a\n")
    assert qr.data_uri == "data:image/png;base64," + base64.b64encode(qr.image).decode()
    assert decode_qr(qr.image) == created.otpauth_uri
    assert created.otpauth_uri.startswith("otpauth://totp/Example%20Corp:bob%40example.com?")
    width, height = PIL.Image.open(io.BytesIO(qr.image)).size
    assert width == height <= 256


async def test_svg_qr_code_and_size(totpd: Totpd) -> None:
    created = await create(totpd, qr_code_format=pb.QR_CODE_FORMAT_SVG, qr_code_size=512)
    assert created.qr_code.mime_type == "image/svg+xml"
    assert created.qr_code.image.lstrip().startswith(b"<?xml")
    assert created.qr_code.data_uri.startswith("data:image/svg+xml;base64,")

    png = await create(totpd, "carol", qr_code_size=1024)
    width, _ = PIL.Image.open(io.BytesIO(png.qr_code.image)).size
    assert 512 < width <= 1024


async def test_non_default_parameters_reach_the_uri_and_the_codes(totpd: Totpd) -> None:
    created = await create(
        totpd,
        algorithm=pb.TOTP_ALGORITHM_SHA512,
        digits=8,
        period=duration_pb2.Duration(seconds=60),
        expiration_minutes=5,
    )
    assert "algorithm=SHA512" in created.otpauth_uri
    assert "digits=8" in created.otpauth_uri
    assert "period=60" in created.otpauth_uri
    assert created.expire_time.ToSeconds() == int(totpd.clock.now) + 300

    code = totp_code(created.secret, totpd.clock.now, digits=8, period=60, algorithm="SHA512")
    activated = await activate(totpd, created, code)
    assert activated.totp.algorithm == pb.TOTP_ALGORITHM_SHA512
    assert (activated.totp.digits, activated.totp.period.seconds) == (8, 60)


async def test_activation_makes_the_factor_active(totpd: Totpd) -> None:
    created = await create(totpd)

    activated = await activate(totpd, created)

    totp = activated.totp
    assert (totp.totp_id, totp.user_id) == (created.totp_id, "alice")
    assert totp.state == pb.TOTP_STATE_ACTIVE
    assert totp.activate_time.ToSeconds() == int(totpd.clock.now)
    assert not totp.HasField("expire_time")
    assert activated.replaced_totp_id == ""
    assert created.secret.encode() not in activated.SerializeToString()


@pytest.mark.parametrize("offset", [-30, 30])
async def test_activation_accepts_one_step_either_side(totpd: Totpd, offset: int) -> None:
    created = await create(totpd)
    activated = await activate(totpd, created, totp_code(created.secret, totpd.clock.now + offset))
    assert activated.totp.state == pb.TOTP_STATE_ACTIVE


async def test_nothing_is_usable_before_activation(totpd: Totpd) -> None:
    created = await create(totpd)
    code = totp_code(created.secret, totpd.clock.now)

    verify = await rpc_error(
        totpd.stub.VerifyTotp(pb.VerifyTotpRequest(user_id="alice", code=code))
    )
    recovery = await rpc_error(
        totpd.stub.UseRecoveryCode(
            pb.UseRecoveryCodeRequest(user_id="alice", recovery_code=created.recovery_codes[0])
        )
    )
    assert error_details(verify).reason == "TOTP_NOT_FOUND"
    assert error_details(recovery).reason == "TOTP_NOT_FOUND"


# -- idempotency ----------------------------------------------------------------------


async def test_retry_with_the_same_request_id_returns_the_same_enrollment(totpd: Totpd) -> None:
    first = await create(totpd, request_id="req-1")
    retry = await create(totpd, request_id="req-1")

    assert retry.totp_id == first.totp_id
    assert retry.secret == first.secret
    assert list(retry.recovery_codes) == list(first.recovery_codes)
    assert retry.otpauth_uri == first.otpauth_uri
    assert decode_qr(retry.qr_code.image) == first.otpauth_uri
    pending = await totpd.stub.GetTotp(pb.GetTotpRequest(user_id="alice"))
    assert [p.totp_id for p in pending.pending_totps] == [first.totp_id]


async def test_concurrent_retries_create_one_enrollment(totpd: Totpd) -> None:
    results = await asyncio.gather(*(create(totpd, request_id="req-c") for _ in range(10)))
    assert len({r.totp_id for r in results}) == 1
    assert len({r.secret for r in results}) == 1


async def test_request_ids_are_per_user_and_distinct_ids_create_distinct_enrollments(
    totpd: Totpd,
) -> None:
    a = await create(totpd, "alice", request_id="same")
    b = await create(totpd, "bob", request_id="same")
    c = await create(totpd, "alice", request_id="other")
    assert len({a.totp_id, b.totp_id, c.totp_id}) == 3


async def test_request_id_reused_with_other_parameters_or_after_activation(totpd: Totpd) -> None:
    created = await create(totpd, request_id="req-2")

    changed = await rpc_error(create(totpd, request_id="req-2", digits=8))
    assert error_details(changed).code == grpc.StatusCode.ALREADY_EXISTS
    assert error_details(changed).reason == "REQUEST_ID_ALREADY_USED"

    await activate(totpd, created)
    after = await rpc_error(create(totpd, request_id="req-2"))
    assert error_details(after).reason == "REQUEST_ID_ALREADY_USED"
    assert created.secret not in after.details()


# -- replacement, expiry, concurrency -----------------------------------------------------


async def test_new_enrollment_replaces_the_active_one_only_on_activation(totpd: Totpd) -> None:
    first = await create(totpd)
    await activate(totpd, first)
    second = await create(totpd)

    # Creating the second one leaves the first fully usable.
    totpd.clock.advance(30)
    ok = await totpd.stub.VerifyTotp(
        pb.VerifyTotpRequest(user_id="alice", code=totp_code(first.secret, totpd.clock.now))
    )
    assert ok.totp_id == first.totp_id

    totpd.clock.advance(30)
    activated = await activate(totpd, second)
    assert activated.replaced_totp_id == first.totp_id

    totpd.clock.advance(30)
    old_code = await rpc_error(
        totpd.stub.VerifyTotp(
            pb.VerifyTotpRequest(user_id="alice", code=totp_code(first.secret, totpd.clock.now))
        )
    )
    assert error_details(old_code).reason == "INVALID_CODE"
    old_recovery = await rpc_error(
        totpd.stub.UseRecoveryCode(
            pb.UseRecoveryCodeRequest(user_id="alice", recovery_code=first.recovery_codes[0])
        )
    )
    assert error_details(old_recovery).reason == "INVALID_CODE"
    used = await totpd.stub.UseRecoveryCode(
        pb.UseRecoveryCodeRequest(user_id="alice", recovery_code=second.recovery_codes[0])
    )
    assert used.totp_id == second.totp_id


async def test_twenty_concurrent_activations_with_one_valid_code_give_one_success(
    totpd: Totpd,
) -> None:
    created = await create(totpd)
    code = totp_code(created.secret, totpd.clock.now)

    outcomes = await asyncio.gather(
        *(activate(totpd, created, code) for _ in range(20)), return_exceptions=True
    )

    successes = [o for o in outcomes if isinstance(o, pb.ActivateTotpResponse)]
    failures = Counter(error_details(o).reason for o in outcomes if isinstance(o, grpc.RpcError))
    assert len(successes) == 1
    assert failures == Counter({"TOTP_NOT_FOUND": 19})


async def test_activation_code_cannot_be_replayed_as_a_login(totpd: Totpd) -> None:
    created = await create(totpd)
    code = totp_code(created.secret, totpd.clock.now)
    await activate(totpd, created, code)

    replay = await rpc_error(
        totpd.stub.VerifyTotp(pb.VerifyTotpRequest(user_id="alice", code=code))
    )
    assert error_details(replay).reason == "INVALID_CODE"


async def test_expired_enrollment_cannot_be_activated(totpd: Totpd) -> None:
    created = await create(totpd, expiration_minutes=5)
    keys = [k async for k in totpd.redis.scan_iter(match=f"*:pending:{created.totp_id}")]
    assert len(keys) == 1
    ttl = await totpd.redis.ttl(keys[0])
    assert 290 < ttl <= 300

    # Let Redis expire it for real, rather than waiting five minutes.
    await totpd.redis.pexpire(keys[0], 1)
    deadline = time.monotonic() + 5
    while await totpd.redis.exists(keys[0]):
        assert time.monotonic() < deadline, "Redis did not expire the key"
        await asyncio.sleep(0.005)

    error = await rpc_error(activate(totpd, created))
    assert error_details(error).code == grpc.StatusCode.NOT_FOUND
    assert error_details(error).reason == "TOTP_NOT_FOUND"
    status = await totpd.stub.GetTotp(pb.GetTotpRequest(user_id="alice"))
    assert list(status.pending_totps) == []


async def test_default_expiry_is_24_hours_in_redis(totpd: Totpd) -> None:
    created = await create(totpd)
    [key] = [k async for k in totpd.redis.scan_iter(match=f"*:pending:{created.totp_id}")]
    assert 86_390 < await totpd.redis.ttl(key) <= 86_400


# -- the error table ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"user_id": ""}, "user_id"),
        ({"user_id": "x" * 257}, "user_id"),
        ({"user_id": "a\x00b"}, "user_id"),
        ({"user_id": "a", "expiration_minutes": 4}, "expiration_minutes"),
        ({"user_id": "a", "expiration_minutes": 1441}, "expiration_minutes"),
        ({"user_id": "a", "expiration_minutes": -1}, "expiration_minutes"),
        ({"user_id": "a", "digits": 7}, "digits"),
        ({"user_id": "a", "period": duration_pb2.Duration(seconds=45)}, "period"),
        ({"user_id": "a", "algorithm": 42}, "algorithm"),
        ({"user_id": "a", "qr_code_format": 9}, "qr_code_format"),
        ({"user_id": "a", "qr_code_size": 10_000}, "qr_code_size"),
        ({"user_id": "a", "issuer": "a:b"}, "issuer"),
        ({"user_id": "a", "request_id": "r" * 65}, "request_id"),
    ],
)
async def test_create_rejects_malformed_input(
    totpd: Totpd, request_fields: dict[str, object], field: str
) -> None:
    error = await rpc_error(totpd.stub.CreateTotp(pb.CreateTotpRequest(**request_fields)))
    details = error_details(error)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (details.reason, details.domain) == ("INVALID_REQUEST", "totpd")
    assert list(details.field_violations) == [field]
    assert await totpd.redis.dbsize() == 0


@pytest.mark.parametrize(
    ("request_fields", "fields"),
    [
        ({"user_id": "", "totp_id": "totp-1", "code": "123456"}, ["user_id"]),
        ({"user_id": "a", "totp_id": "", "code": "123456"}, ["totp_id"]),
        ({"user_id": "a", "totp_id": "../../etc", "code": "123456"}, ["totp_id"]),
        ({"user_id": "a", "totp_id": "totp-1", "code": "12345"}, ["code"]),
        ({"user_id": "a", "totp_id": "totp-1", "code": "1234567"}, ["code"]),
        ({"user_id": "a", "totp_id": "totp-1", "code": "12345a"}, ["code"]),
        ({"user_id": "a", "totp_id": "totp-1", "code": "١٢٣٤٥٦"}, ["code"]),
        ({"user_id": "a", "totp_id": "totp-1", "code": "123456\n"}, ["code"]),
        ({"user_id": "", "totp_id": "", "code": ""}, ["user_id", "totp_id", "code"]),
    ],
)
async def test_activate_rejects_malformed_input(
    totpd: Totpd, request_fields: dict[str, str], fields: list[str]
) -> None:
    created = await create(totpd, "a")
    error = await rpc_error(totpd.stub.ActivateTotp(pb.ActivateTotpRequest(**request_fields)))
    details = error_details(error)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert list(details.field_violations) == fields
    # Malformed input never counts as an attempt.
    [key] = [k async for k in totpd.redis.scan_iter(match=f"*:pending:{created.totp_id}")]
    assert await totpd.redis.hget(key, "fails") is None


async def test_activate_unknown_other_users_and_already_activated_are_not_found(
    totpd: Totpd,
) -> None:
    created = await create(totpd, "alice")
    code = totp_code(created.secret, totpd.clock.now)

    unknown = await rpc_error(
        totpd.stub.ActivateTotp(
            pb.ActivateTotpRequest(user_id="alice", totp_id="totp-unknown", code=code)
        )
    )
    other_user = await rpc_error(activate(totpd, created, code, user_id="mallory"))
    await activate(totpd, created, code)
    again = await rpc_error(activate(totpd, created, code))

    for error in (unknown, other_user, again):
        details = error_details(error)
        assert (details.code, details.reason) == (grpc.StatusCode.NOT_FOUND, "TOTP_NOT_FOUND")


@pytest.mark.parametrize("offset", [-60, 60, 3600])
async def test_codes_outside_the_window_are_invalid(totpd: Totpd, offset: int) -> None:
    created = await create(totpd)
    error = await rpc_error(
        activate(totpd, created, totp_code(created.secret, totpd.clock.now + offset))
    )
    assert error_details(error).code == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(error).reason == "INVALID_CODE"


async def test_five_failed_activations_discard_the_enrollment(totpd: Totpd) -> None:
    created = await create(totpd)
    good = totp_code(created.secret, totpd.clock.now)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"

    reasons = []
    for _ in range(5):
        reasons.append(error_details(await rpc_error(activate(totpd, created, wrong))).reason)
    assert reasons == ["INVALID_CODE"] * 4 + ["TOO_MANY_ATTEMPTS"]
    # Discarded: even the right code finds nothing now.
    after = await rpc_error(activate(totpd, created, good))
    assert error_details(after).reason == "TOTP_NOT_FOUND"


async def test_concurrent_wrong_guesses_all_count(totpd: Totpd) -> None:
    created = await create(totpd)
    good = totp_code(created.secret, totpd.clock.now)
    wrong = [f"{(int(good) + i) % 1_000_000:06d}" for i in range(1, 31)]

    outcomes = await asyncio.gather(
        *(activate(totpd, created, w) for w in wrong), return_exceptions=True
    )

    reasons = Counter(error_details(o).reason for o in outcomes)  # type: ignore[arg-type]
    assert reasons["INVALID_CODE"] == 4
    assert reasons["TOO_MANY_ATTEMPTS"] == 1
    assert reasons["TOTP_NOT_FOUND"] == 25
    after = await rpc_error(activate(totpd, created, good))
    assert error_details(after).reason == "TOTP_NOT_FOUND"


# -- at rest ------------------------------------------------------------------------------


async def test_no_plaintext_secret_code_or_uri_in_redis(totpd: Totpd) -> None:
    created = await create(totpd, request_id="r")
    code = totp_code(created.secret, totpd.clock.now)
    pending_dump = await all_redis_bytes(totpd)
    await activate(totpd, created, code)
    await totpd.stub.UseRecoveryCode(
        pb.UseRecoveryCodeRequest(user_id="alice", recovery_code=created.recovery_codes[0])
    )
    active_dump = await all_redis_bytes(totpd)

    secret_raw = base64.b32decode(created.secret)
    needles = [created.secret.encode(), secret_raw, created.otpauth_uri.encode(), code.encode()]
    for rc in created.recovery_codes:
        needles += [rc.encode(), rc.replace("-", "").encode()]
    for dump in (pending_dump, active_dump):
        for needle in needles:
            assert needle not in dump
            assert base64.b64encode(needle) not in dump
