"""The use cases of TotpService against the in-memory FakeStore and a fake clock."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest

from tests.conftest import T0, FakeClock
from tests.helpers import totp_code
from totpd.errors import (
    InvalidCode,
    RequestIdAlreadyUsed,
    StoreUnavailable,
    TooManyAttempts,
    TotpNotFound,
)
from totpd.keyring import Keyring
from totpd.model import (
    Algorithm,
    CheckResult,
    CreateCommand,
    Enrollment,
    Event,
    EventType,
    Lockout,
    LockoutPolicy,
    QrFormat,
    TotpParams,
    TotpState,
)
from totpd.service import Policy, TotpService
from totpd.store import Store

from .fakes import FakeQrRenderer, FakeStore

CODE_SHAPE = re.compile(r"[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}\Z")
DAY = 24 * 60 * 60


@dataclass
class Harness:
    service: TotpService
    store: FakeStore
    clock: FakeClock
    keyring: Keyring
    qr: FakeQrRenderer

    def with_policy(self, policy: Policy) -> TotpService:
        return TotpService(self.store, self.keyring, policy, clock=self.clock, render_qr=self.qr)


@pytest.fixture
def h(clock: FakeClock, keyring: Keyring) -> Harness:
    store = FakeStore(clock)
    qr = FakeQrRenderer()
    service = TotpService(store, keyring, Policy(), clock=clock, render_qr=qr)
    return Harness(service, store, clock, keyring, qr)


def command(user_id: str = "alice", **fields: object) -> CreateCommand:
    defaults: dict[str, object] = {
        "user_id": user_id,
        "expiration_seconds": DAY,
        "issuer": "",
        "account_name": user_id,  # validation resolves the default
        "request_id": "",
        "params": TotpParams(),
        "qr_format": QrFormat.PNG,
        "qr_size": 256,
    }
    defaults.update(fields)
    return CreateCommand(**defaults)  # type: ignore[arg-type]


def code(enrollment: Enrollment, at: float) -> str:
    p = enrollment.totp.params
    return totp_code(
        enrollment.secret, at, digits=p.digits, period=p.period, algorithm=p.algorithm.value
    )


def wrong_code(enrollment: Enrollment, at: float) -> str:
    """A well-formed code that no step within two of ``at`` has."""
    p = enrollment.totp.params
    near = {code(enrollment, at + k * p.period) for k in range(-2, 3)}
    return next(c for c in (f"{n:0{p.digits}d}" for n in range(100)) if c not in near)


async def enroll(h: Harness, user_id: str = "alice", **fields: object) -> Enrollment:
    """Create and activate; the clock then moves on a minute, past the activation code."""
    enrollment = await h.service.create(command(user_id, **fields))
    await h.service.activate(user_id, enrollment.totp.totp_id, code(enrollment, h.clock.now))
    h.clock.advance(60)
    return enrollment


def event_types(h: Harness) -> list[tuple[EventType, str]]:
    return [(e.type, e.outcome) for e in h.store.events]


def test_fake_store_is_a_store(clock: FakeClock) -> None:
    store: Store = FakeStore(clock)  # checked by mypy; at runtime, that it has every method
    for name in dir(Store):
        if not name.startswith("_"):
            assert callable(getattr(store, name)), name


# -- create ----------------------------------------------------------------------------


async def test_create_returns_secret_uri_qr_and_ten_codes(h: Harness) -> None:
    enrollment = await h.service.create(command())

    assert re.fullmatch(r"[A-Z2-7]{32}", enrollment.secret)
    assert len(base64.b32decode(enrollment.secret)) == 20
    assert len(enrollment.recovery_codes) == 10
    assert len(set(enrollment.recovery_codes)) == 10
    assert all(CODE_SHAPE.match(c) for c in enrollment.recovery_codes)

    totp = enrollment.totp
    assert re.fullmatch(r"totp-[0-9a-f]{32}", totp.totp_id)
    assert totp.user_id == "alice"
    assert totp.state is TotpState.PENDING
    assert totp.params == TotpParams()
    # An empty issuer and account name fall back to the policy's issuer and the user id.
    assert (totp.issuer, totp.account_name) == ("totpd", "alice")
    assert totp.create_time == T0
    assert totp.expire_time == T0 + DAY
    assert totp.activate_time is None

    parsed = pyotp.parse_uri(enrollment.otpauth_uri)
    assert parsed.secret == enrollment.secret
    assert (parsed.issuer, parsed.name) == ("totpd", "alice")
    assert h.qr.calls == [(enrollment.otpauth_uri, QrFormat.PNG, 256)]
    assert enrollment.qr_code.image == enrollment.otpauth_uri.encode()
    assert event_types(h) == [(EventType.CREATE, "ok")]


async def test_create_uses_the_requested_parameters(h: Harness) -> None:
    params = TotpParams(Algorithm.SHA256, 8, 60)
    enrollment = await h.service.create(
        command(
            issuer="Example Co",
            account_name="alice@example.com",
            params=params,
            expiration_seconds=300,
            qr_format=QrFormat.SVG,
            qr_size=512,
        )
    )
    assert enrollment.totp.params == params
    assert enrollment.totp.expire_time == T0 + 300
    parsed = pyotp.parse_uri(enrollment.otpauth_uri)
    assert (parsed.issuer, parsed.name) == ("Example Co", "alice@example.com")
    assert (parsed.digits, parsed.interval, parsed.digest().name) == (8, 60, "sha256")
    assert h.qr.calls == [(enrollment.otpauth_uri, QrFormat.SVG, 512)]
    assert enrollment.qr_code.format is QrFormat.SVG


async def test_create_stores_nothing_in_plaintext(h: Harness) -> None:
    enrollment = await h.service.create(command())
    record = await h.store.get_pending("alice", enrollment.totp.totp_id)
    assert record is not None
    secret = base64.b32decode(enrollment.secret)
    assert secret not in record.secret.blob
    assert record.secret.key_id == "k1"
    for c in enrollment.recovery_codes:
        assert c.encode() not in record.sealed_recovery_codes.blob
        assert c.replace("-", "").encode() not in b"".join(record.recovery_hashes)
    assert len(record.recovery_hashes) == 10
    assert all(len(d) == 32 for d in record.recovery_hashes)


async def test_each_create_is_a_new_enrollment(h: Harness) -> None:
    a = await h.service.create(command())
    b = await h.service.create(command())
    assert a.totp.totp_id != b.totp.totp_id
    assert a.secret != b.secret
    assert set(a.recovery_codes).isdisjoint(b.recovery_codes)
    assert len((await h.service.status("alice")).pending) == 2


# -- idempotent create -----------------------------------------------------------------


async def test_create_retry_with_the_same_request_id_returns_the_same_enrollment(
    h: Harness,
) -> None:
    first = await h.service.create(command(request_id="req-1"))
    h.clock.advance(90)
    again = await h.service.create(command(request_id="req-1"))
    assert again.totp.totp_id == first.totp.totp_id
    assert again.secret == first.secret
    assert again.recovery_codes == first.recovery_codes
    assert again.otpauth_uri == first.otpauth_uri
    assert again.totp.create_time == first.totp.create_time == T0
    assert again.totp.expire_time == first.totp.expire_time
    assert len((await h.service.status("alice")).pending) == 1
    assert event_types(h) == [(EventType.CREATE, "ok")]  # nothing was created twice


async def test_create_retry_may_ask_for_another_qr_format(h: Harness) -> None:
    first = await h.service.create(command(request_id="req-1"))
    again = await h.service.create(command(request_id="req-1", qr_format=QrFormat.SVG, qr_size=128))
    assert again.secret == first.secret
    assert h.qr.calls[-1] == (first.otpauth_uri, QrFormat.SVG, 128)


@pytest.mark.parametrize(
    "changed",
    [
        {"params": TotpParams(digits=8)},
        {"params": TotpParams(Algorithm.SHA512)},
        {"params": TotpParams(period=60)},
        {"issuer": "Other"},
        {"account_name": "bob"},
        {"expiration_seconds": 600},
    ],
    ids=lambda c: next(iter(c)),
)
async def test_create_retry_with_other_parameters_is_refused(
    h: Harness, changed: dict[str, object]
) -> None:
    await h.service.create(command(request_id="req-1"))
    with pytest.raises(RequestIdAlreadyUsed):
        await h.service.create(command(request_id="req-1", **changed))
    assert len((await h.service.status("alice")).pending) == 1


async def test_create_retry_after_activation_is_refused(h: Harness) -> None:
    await enroll(h, request_id="req-1")
    with pytest.raises(RequestIdAlreadyUsed):
        await h.service.create(command(request_id="req-1"))


async def test_request_ids_are_per_user(h: Harness) -> None:
    alice = await h.service.create(command("alice", request_id="req-1"))
    bob = await h.service.create(command("bob", request_id="req-1"))
    assert alice.totp.totp_id != bob.totp.totp_id
    assert bob.totp.user_id == "bob"


async def test_request_id_can_be_reused_once_its_enrollment_expired(h: Harness) -> None:
    first = await h.service.create(command(request_id="req-1", expiration_seconds=300))
    h.clock.advance(300)
    again = await h.service.create(command(request_id="req-1", expiration_seconds=300))
    assert again.totp.totp_id != first.totp.totp_id


# -- activate --------------------------------------------------------------------------


async def test_activate_with_the_current_code(h: Harness) -> None:
    enrollment = await h.service.create(command())
    h.clock.advance(5)
    activation = await h.service.activate(
        "alice", enrollment.totp.totp_id, code(enrollment, h.clock.now)
    )
    assert activation.replaced_totp_id is None
    totp = activation.totp
    assert totp.state is TotpState.ACTIVE
    assert totp.totp_id == enrollment.totp.totp_id
    assert totp.activate_time == T0 + 5
    assert totp.create_time == T0
    assert (totp.issuer, totp.account_name) == ("totpd", "alice")

    status = await h.service.status("alice")
    assert status.active is not None and status.active.totp_id == totp.totp_id
    assert status.pending == ()
    assert status.recovery_codes_remaining == 10
    assert event_types(h)[-1] == (EventType.ACTIVATE, "activated")
    # The pending enrollment is gone: it cannot be activated twice.
    with pytest.raises(TotpNotFound):
        await h.service.activate("alice", totp.totp_id, code(enrollment, h.clock.now))


@pytest.mark.parametrize("offset", [-30, 30])
async def test_activate_accepts_a_neighbouring_step(h: Harness, offset: int) -> None:
    enrollment = await h.service.create(command())
    c = code(enrollment, T0 + offset)
    activation = await h.service.activate("alice", enrollment.totp.totp_id, c)
    assert activation.totp.state is TotpState.ACTIVE


@pytest.mark.parametrize("offset", [-60, 60])
async def test_activate_refuses_two_steps_away(h: Harness, offset: int) -> None:
    enrollment = await h.service.create(command())
    with pytest.raises(InvalidCode):
        await h.service.activate("alice", enrollment.totp.totp_id, code(enrollment, T0 + offset))


async def test_activate_with_a_wrong_code(h: Harness) -> None:
    enrollment = await h.service.create(command())
    totp_id = enrollment.totp.totp_id
    with pytest.raises(InvalidCode):
        await h.service.activate("alice", totp_id, wrong_code(enrollment, T0))
    record = await h.store.get_pending("alice", totp_id)
    assert record is not None and record.failed_attempts == 1
    assert event_types(h)[-1] == (EventType.ACTIVATE, "rejected")
    # Still pending, and the right code still works.
    activation = await h.service.activate("alice", totp_id, code(enrollment, T0))
    assert activation.totp.state is TotpState.ACTIVE


async def test_fifth_failed_activation_discards_the_enrollment(h: Harness) -> None:
    enrollment = await h.service.create(command())
    totp_id, bad = enrollment.totp.totp_id, wrong_code(enrollment, T0)
    for _ in range(4):
        with pytest.raises(InvalidCode):
            await h.service.activate("alice", totp_id, bad)
    with pytest.raises(TooManyAttempts) as caught:
        await h.service.activate("alice", totp_id, bad)
    assert caught.value.retry_after is None  # it does not lift: the enrollment is gone
    with pytest.raises(TotpNotFound):
        await h.service.activate("alice", totp_id, code(enrollment, T0))
    assert (await h.service.status("alice")).pending == ()
    assert event_types(h)[-2:] == [
        (EventType.ACTIVATE, "discarded"),
        (EventType.ACTIVATE, "not_found"),
    ]


async def test_activation_attempts_follow_the_policy(h: Harness) -> None:
    service = h.with_policy(Policy(activation_max_attempts=2))
    enrollment = await service.create(command())
    totp_id, bad = enrollment.totp.totp_id, wrong_code(enrollment, T0)
    with pytest.raises(InvalidCode):
        await service.activate("alice", totp_id, bad)
    with pytest.raises(TooManyAttempts):
        await service.activate("alice", totp_id, bad)


async def test_activate_unknown_other_users_or_expired_enrollment(h: Harness) -> None:
    enrollment = await h.service.create(command(expiration_seconds=300))
    totp_id = enrollment.totp.totp_id
    with pytest.raises(TotpNotFound):
        await h.service.activate("alice", "totp-unknown", code(enrollment, T0))
    with pytest.raises(TotpNotFound):
        await h.service.activate("bob", totp_id, code(enrollment, T0))
    h.clock.advance(300)
    with pytest.raises(TotpNotFound):
        await h.service.activate("alice", totp_id, code(enrollment, h.clock.now))


async def test_activation_replaces_the_active_factor_and_its_codes(h: Harness) -> None:
    old = await enroll(h)
    new = await h.service.create(command())
    # Until the new one is activated, the old one keeps working.
    await h.service.verify("alice", code(old, h.clock.now))
    activation = await h.service.activate("alice", new.totp.totp_id, code(new, h.clock.now))
    assert activation.replaced_totp_id == old.totp.totp_id
    h.clock.advance(60)
    with pytest.raises(InvalidCode):
        await h.service.verify("alice", code(old, h.clock.now))
    with pytest.raises(InvalidCode):
        await h.service.use_recovery_code("alice", old.recovery_codes[0])
    use = await h.service.use_recovery_code("alice", new.recovery_codes[0])
    assert use.totp_id == new.totp.totp_id


async def test_activation_lifts_a_lockout(h: Harness) -> None:
    old = await enroll(h)
    for _ in range(5):
        with pytest.raises(InvalidCode):
            await h.service.verify("alice", wrong_code(old, h.clock.now))
    assert (await h.service.status("alice")).locked
    new = await h.service.create(command())
    await h.service.activate("alice", new.totp.totp_id, code(new, h.clock.now))
    status = await h.service.status("alice")
    assert not status.locked
    assert status.lockout == Lockout()


# -- verify ----------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-1, 0, 1])
async def test_verify_reports_the_step_offset(h: Harness, offset: int) -> None:
    enrollment = await enroll(h)
    verification = await h.service.verify("alice", code(enrollment, h.clock.now + 30 * offset))
    assert verification.totp_id == enrollment.totp.totp_id
    assert verification.time_step_offset == offset
    assert event_types(h)[-1] == (EventType.VERIFY, "accepted")


@pytest.mark.parametrize("offset", [-2, 2])
async def test_verify_refuses_codes_outside_the_window(h: Harness, offset: int) -> None:
    enrollment = await enroll(h)
    h.clock.advance(60)
    with pytest.raises(InvalidCode):
        await h.service.verify("alice", code(enrollment, h.clock.now + 30 * offset))


async def test_verify_window_follows_the_policy(h: Harness) -> None:
    enrollment = await enroll(h)
    h.clock.advance(60)
    wide = h.with_policy(Policy(verify_window=2))
    verification = await wide.verify("alice", code(enrollment, h.clock.now - 60))
    assert verification.time_step_offset == -2
    narrow = h.with_policy(Policy(verify_window=0))
    with pytest.raises(InvalidCode):
        await narrow.verify("alice", code(enrollment, h.clock.now + 30))


async def test_verify_refuses_a_replayed_code(h: Harness) -> None:
    enrollment = await enroll(h)
    c = code(enrollment, h.clock.now)
    await h.service.verify("alice", c)
    with pytest.raises(InvalidCode):
        await h.service.verify("alice", c)
    h.clock.advance(10)  # the same step, a few seconds later
    with pytest.raises(InvalidCode):
        await h.service.verify("alice", c)
    assert event_types(h)[-1] == (EventType.VERIFY, "rejected")


async def test_verify_refuses_an_older_code_after_a_newer_one(h: Harness) -> None:
    enrollment = await enroll(h)
    await h.service.verify("alice", code(enrollment, h.clock.now + 30))
    with pytest.raises(InvalidCode):
        await h.service.verify("alice", code(enrollment, h.clock.now))


async def test_the_activation_code_cannot_be_used_to_verify(h: Harness) -> None:
    enrollment = await h.service.create(command())
    c = code(enrollment, T0)
    await h.service.activate("alice", enrollment.totp.totp_id, c)
    with pytest.raises(InvalidCode):
        await h.service.verify("alice", c)


async def test_verify_without_an_active_factor(h: Harness) -> None:
    with pytest.raises(TotpNotFound):
        await h.service.verify("alice", "123456")
    pending = await h.service.create(command())  # pending is not enough
    with pytest.raises(TotpNotFound):
        await h.service.verify("alice", code(pending, T0))


async def test_verify_with_sha512_eight_digits_and_sixty_seconds(h: Harness) -> None:
    enrollment = await enroll(h, params=TotpParams(Algorithm.SHA512, 8, 60))
    h.clock.advance(60)
    c = code(enrollment, h.clock.now)
    assert len(c) == 8
    verification = await h.service.verify("alice", c)
    assert verification.time_step_offset == 0
    six = c[-6:]  # the 6-digit truncation of the same HMAC is not the code
    with pytest.raises(InvalidCode):
        await h.service.verify("alice", six)


async def test_verify_records_the_last_use(h: Harness) -> None:
    enrollment = await enroll(h)
    status = await h.service.status("alice")
    assert status.active is not None and status.active.last_used_time is None
    await h.service.verify("alice", code(enrollment, h.clock.now))
    status = await h.service.status("alice")
    assert status.active is not None and status.active.last_used_time == h.clock.now


class SwapBeforeFirstCheck(FakeStore):
    """A store in which another request replaces the active factor between the service's
    read of it and its code check (the race check_code.lua answers with 'stale')."""

    swap: Enrollment | None = None

    async def check_code(self, user_id: str, totp_id: str, *args: object) -> CheckResult:
        if self.swap is not None:
            new, self.swap = self.swap, None
            await self.activate(user_id, new.totp.totp_id, 1, 5, T0)
        return await super().check_code(user_id, totp_id, *args)  # type: ignore[arg-type]


async def test_verify_checks_against_a_factor_replaced_mid_check(
    clock: FakeClock, keyring: Keyring
) -> None:
    store = SwapBeforeFirstCheck(clock)
    qr = FakeQrRenderer()
    h = Harness(TotpService(store, keyring, clock=clock, render_qr=qr), store, clock, keyring, qr)
    old = await enroll(h)
    new = await h.service.create(command())
    store.swap = new
    # The first check reads `old`, finds no match, and is told 'stale'; the second reads
    # `new` and accepts. Without the re-read, the user would get INVALID_CODE.
    verification = await h.service.verify("alice", code(new, h.clock.now))
    assert verification.totp_id == new.totp.totp_id
    assert store.swap is None  # the swap did happen
    verified = [e for e in store.events if e.type == EventType.VERIFY]
    assert [(e.totp_id, e.outcome) for e in verified] == [(new.totp.totp_id, "accepted")]
    assert (await h.service.status("alice")).lockout == Lockout()  # no failure counted
    assert old.totp.totp_id != new.totp.totp_id


# -- lockout ---------------------------------------------------------------------------


async def test_lockout_after_five_failures_then_doubling(h: Harness) -> None:
    enrollment = await enroll(h)
    for failures in range(1, 6):
        with pytest.raises(InvalidCode):
            await h.service.verify("alice", wrong_code(enrollment, h.clock.now))
        assert (await h.service.status("alice")).lockout.consecutive_failures == failures
    locked_at = h.clock.now

    # Locked: even the right code is refused, and the refusal says for how long.
    with pytest.raises(TooManyAttempts) as caught:
        await h.service.verify("alice", code(enrollment, h.clock.now))
    assert caught.value.retry_after == 60
    status = await h.service.status("alice")
    assert status.locked
    assert status.lockout == Lockout(5, locked_until=locked_at + 60)
    assert event_types(h)[-1] == (EventType.VERIFY, "locked")
    h.clock.advance(59)
    with pytest.raises(TooManyAttempts) as caught:
        await h.service.verify("alice", code(enrollment, h.clock.now))
    assert caught.value.retry_after == 1
    # Refusals while locked are not failures.
    assert (await h.service.status("alice")).lockout.consecutive_failures == 5

    # The lock lifts; waiting does not reset the count: one more failure locks for 120 s.
    h.clock.advance(1)
    assert not (await h.service.status("alice")).locked
    with pytest.raises(InvalidCode):
        await h.service.verify("alice", wrong_code(enrollment, h.clock.now))
    with pytest.raises(TooManyAttempts) as caught:
        await h.service.verify("alice", code(enrollment, h.clock.now))
    assert caught.value.retry_after == 120

    # After it, the right code is accepted and the count starts over.
    h.clock.advance(120)
    await h.service.verify("alice", code(enrollment, h.clock.now))
    status = await h.service.status("alice")
    assert status.lockout == Lockout()
    assert not status.locked


async def test_lockout_is_capped_and_becomes_permanent(h: Harness) -> None:
    policy = Policy(
        lockout=LockoutPolicy(threshold=2, base_seconds=10, max_seconds=25, permanent_after=5)
    )
    service = h.with_policy(policy)
    enrollment = await enroll(h)
    with pytest.raises(InvalidCode):  # the first failure is below the threshold
        await service.verify("alice", wrong_code(enrollment, h.clock.now))
    delays = []
    for _ in range(4):  # failures 2 to 5, each followed by the right code
        with pytest.raises(InvalidCode):
            await service.verify("alice", wrong_code(enrollment, h.clock.now))
        with pytest.raises(TooManyAttempts) as caught:
            await service.verify("alice", code(enrollment, h.clock.now))
        delays.append(caught.value.retry_after)
        h.clock.advance(caught.value.retry_after or 0)
    # 10 s doubling per failure, capped at 25 s; the fifth failure locks for good.
    assert delays == [10, 20, 25, None]
    assert (await h.service.status("alice")).lockout.permanent
    h.clock.advance(DAY)
    with pytest.raises(TooManyAttempts):
        await service.verify("alice", code(enrollment, h.clock.now))


async def test_a_replayed_code_counts_as_a_failure(h: Harness) -> None:
    enrollment = await enroll(h)
    c = code(enrollment, h.clock.now)
    await h.service.verify("alice", c)
    with pytest.raises(InvalidCode):
        await h.service.verify("alice", c)
    assert (await h.service.status("alice")).lockout.consecutive_failures == 1


async def test_recovery_code_failures_and_totp_failures_share_one_lockout(h: Harness) -> None:
    enrollment = await enroll(h)
    for _ in range(3):
        with pytest.raises(InvalidCode):
            await h.service.use_recovery_code("alice", "zzzz-zzzz-zzzz")
    for _ in range(2):
        with pytest.raises(InvalidCode):
            await h.service.verify("alice", wrong_code(enrollment, h.clock.now))
    with pytest.raises(TooManyAttempts):
        await h.service.use_recovery_code("alice", enrollment.recovery_codes[0])
    with pytest.raises(TooManyAttempts):
        await h.service.verify("alice", code(enrollment, h.clock.now))


# -- recovery codes --------------------------------------------------------------------


async def test_use_recovery_code_once(h: Harness) -> None:
    enrollment = await enroll(h)
    first = enrollment.recovery_codes[0]
    use = await h.service.use_recovery_code("alice", first)
    assert (use.totp_id, use.remaining) == (enrollment.totp.totp_id, 9)
    assert event_types(h)[-1] == (EventType.USE_RECOVERY_CODE, "accepted")
    with pytest.raises(InvalidCode):
        await h.service.use_recovery_code("alice", first)
    assert (await h.service.status("alice")).recovery_codes_remaining == 9


async def test_recovery_codes_are_normalised(h: Harness) -> None:
    enrollment = await enroll(h)
    variants = [
        lambda c: c.upper(),
        lambda c: c.replace("-", ""),
        lambda c: c.replace("-", " "),
        lambda c: f"  {c.upper().replace('-', '')}\t",
    ]
    for i, variant in enumerate(variants):
        use = await h.service.use_recovery_code("alice", variant(enrollment.recovery_codes[i]))
        assert use.remaining == 9 - i


async def test_all_ten_recovery_codes_work_once(h: Harness) -> None:
    enrollment = await enroll(h)
    remaining = [
        (await h.service.use_recovery_code("alice", c)).remaining for c in enrollment.recovery_codes
    ]
    assert remaining == list(range(9, -1, -1))


@pytest.mark.parametrize("garbage", ["", "!!!", "ckss-2skx-eb0", "١٢٣٤-٥٦٧٨-٩٠١٢"])
async def test_malformed_recovery_code_counts_as_a_failure(h: Harness, garbage: str) -> None:
    await enroll(h)
    with pytest.raises(InvalidCode):
        await h.service.use_recovery_code("alice", garbage)
    assert (await h.service.status("alice")).lockout.consecutive_failures == 1


async def test_a_good_recovery_code_resets_the_failure_count(h: Harness) -> None:
    enrollment = await enroll(h)
    for _ in range(4):
        with pytest.raises(InvalidCode):
            await h.service.use_recovery_code("alice", "zzzz-zzzz-zzzz")
    await h.service.use_recovery_code("alice", enrollment.recovery_codes[0])
    assert (await h.service.status("alice")).lockout == Lockout()


async def test_recovery_codes_need_an_active_factor(h: Harness) -> None:
    pending = await h.service.create(command())
    with pytest.raises(TotpNotFound):
        await h.service.use_recovery_code("alice", pending.recovery_codes[0])


async def test_recovery_codes_belong_to_their_user(h: Harness) -> None:
    alice = await enroll(h, "alice")
    await enroll(h, "bob")
    with pytest.raises(InvalidCode):
        await h.service.use_recovery_code("bob", alice.recovery_codes[0])


async def test_regenerate_recovery_codes(h: Harness) -> None:
    enrollment = await enroll(h)
    await h.service.use_recovery_code("alice", enrollment.recovery_codes[0])
    totp_id, codes = await h.service.regenerate_recovery_codes("alice")
    assert totp_id == enrollment.totp.totp_id
    assert len(set(codes)) == 10 and all(CODE_SHAPE.match(c) for c in codes)
    assert set(codes).isdisjoint(enrollment.recovery_codes)
    assert (await h.service.status("alice")).recovery_codes_remaining == 10
    assert event_types(h)[-1] == (EventType.REGENERATE_RECOVERY_CODES, "ok")
    with pytest.raises(InvalidCode):
        await h.service.use_recovery_code("alice", enrollment.recovery_codes[1])
    assert (await h.service.use_recovery_code("alice", codes[0])).remaining == 9


async def test_regenerate_without_an_active_factor(h: Harness) -> None:
    await h.service.create(command())
    with pytest.raises(TotpNotFound):
        await h.service.regenerate_recovery_codes("alice")


def _keys_file(path: Path, hashing: dict[str, bytes], primary: str) -> Path:
    enc = base64.b64encode(bytes(32)).decode()
    path.write_text(
        json.dumps(
            {
                "encryption": {"primary": "k1", "keys": {"k1": enc}},
                "hashing": {
                    "primary": primary,
                    "keys": {k: base64.b64encode(v).decode() for k, v in hashing.items()},
                },
            }
        )
    )
    return path


async def test_recovery_codes_survive_a_hashing_key_rotation(h: Harness, tmp_path: Path) -> None:
    h1, h2 = b"\x01" * 32, b"\x02" * 32
    before = Keyring.load(_keys_file(tmp_path / "before.json", {"h1": h1}, "h1"))
    after = Keyring.load(_keys_file(tmp_path / "after.json", {"h1": h1, "h2": h2}, "h2"))
    old_service = TotpService(h.store, before, clock=h.clock, render_qr=h.qr)
    new_service = TotpService(h.store, after, clock=h.clock, render_qr=h.qr)

    enrollment = await old_service.create(command())
    await old_service.activate("alice", enrollment.totp.totp_id, code(enrollment, T0))
    # Codes hashed under h1 still work once h2 is primary...
    use = await new_service.use_recovery_code("alice", enrollment.recovery_codes[0])
    assert use.remaining == 9
    # ...and new codes are hashed under h2, which the old keyring cannot check.
    _, codes = await new_service.regenerate_recovery_codes("alice")
    with pytest.raises(InvalidCode):
        await old_service.use_recovery_code("alice", codes[0])
    await new_service.use_recovery_code("alice", codes[1])


# -- status and delete -----------------------------------------------------------------


async def test_status_of_a_user_without_factors(h: Harness) -> None:
    status = await h.service.status("nobody")
    assert status.active is None
    assert status.pending == ()
    assert status.recovery_codes_remaining == 0
    assert status.lockout == Lockout()
    assert not status.locked


async def test_status_lists_live_pending_enrollments_oldest_first(h: Harness) -> None:
    active = await enroll(h)
    short = await h.service.create(command(expiration_seconds=300))
    h.clock.advance(10)
    later = await h.service.create(command())
    h.clock.advance(10)
    newest = await h.service.create(command(expiration_seconds=600))

    status = await h.service.status("alice")
    assert status.active is not None
    assert status.active.totp_id == active.totp.totp_id
    assert status.active.state is TotpState.ACTIVE
    assert status.active.activate_time == T0
    assert status.recovery_codes_remaining == 10
    assert [t.totp_id for t in status.pending] == [
        short.totp.totp_id,
        later.totp.totp_id,
        newest.totp.totp_id,
    ]
    assert all(t.state is TotpState.PENDING for t in status.pending)

    h.clock.advance(300)  # `short` has expired
    status = await h.service.status("alice")
    assert [t.totp_id for t in status.pending] == [
        later.totp.totp_id,
        newest.totp.totp_id,
    ]


async def test_status_never_exposes_secrets(h: Harness) -> None:
    enrollment = await enroll(h)
    await h.service.create(command())
    text = repr(await h.service.status("alice"))
    assert enrollment.secret not in text
    assert not any(c in text for c in enrollment.recovery_codes)


async def test_delete_the_active_factor(h: Harness) -> None:
    enrollment = await enroll(h)
    for _ in range(5):
        with pytest.raises(InvalidCode):
            await h.service.verify("alice", wrong_code(enrollment, h.clock.now))
    assert await h.service.delete("alice", None) is True
    assert event_types(h)[-1] == (EventType.DELETE, "ok")
    with pytest.raises(TotpNotFound):
        await h.service.verify("alice", code(enrollment, h.clock.now))
    with pytest.raises(TotpNotFound):
        await h.service.use_recovery_code("alice", enrollment.recovery_codes[0])
    status = await h.service.status("alice")
    assert status.active is None
    assert status.recovery_codes_remaining == 0
    assert status.lockout == Lockout()  # the lockout went with it
    # Deleting what does not exist is not an error, just nothing done.
    assert await h.service.delete("alice", None) is False


async def test_delete_the_active_factor_by_id(h: Harness) -> None:
    enrollment = await enroll(h)
    assert await h.service.delete("alice", enrollment.totp.totp_id) is True
    assert (await h.service.status("alice")).active is None


async def test_delete_one_pending_enrollment(h: Harness) -> None:
    active = await enroll(h)
    keep = await h.service.create(command())
    drop = await h.service.create(command())
    assert await h.service.delete("alice", drop.totp.totp_id) is True
    with pytest.raises(TotpNotFound):
        await h.service.activate("alice", drop.totp.totp_id, code(drop, h.clock.now))
    status = await h.service.status("alice")
    assert status.active is not None and status.active.totp_id == active.totp.totp_id
    assert [t.totp_id for t in status.pending] == [keep.totp.totp_id]
    assert await h.service.delete("alice", drop.totp.totp_id) is False
    assert await h.service.delete("alice", "totp-unknown") is False
    assert await h.service.delete("bob", keep.totp.totp_id) is False


async def test_delete_does_not_touch_other_users(h: Harness) -> None:
    await enroll(h, "alice")
    bob = await enroll(h, "bob")
    await h.service.delete("alice", None)
    await h.service.verify("bob", code(bob, h.clock.now))


# -- audit events ----------------------------------------------------------------------


async def test_events_name_what_happened_and_never_a_secret(h: Harness) -> None:
    enrollment = await enroll(h)
    await h.service.verify("alice", code(enrollment, h.clock.now))
    await h.service.use_recovery_code("alice", enrollment.recovery_codes[0])
    totp_id = enrollment.totp.totp_id
    assert [(e.type, e.totp_id, e.outcome) for e in h.store.events] == [
        (EventType.CREATE, totp_id, "ok"),
        (EventType.ACTIVATE, totp_id, "activated"),
        (EventType.VERIFY, totp_id, "accepted"),
        (EventType.USE_RECOVERY_CODE, totp_id, "accepted"),
    ]
    assert all(e.user_id == "alice" for e in h.store.events)
    text = repr(h.store.events)
    assert enrollment.secret not in text
    assert not any(c in text for c in enrollment.recovery_codes)


async def test_the_failure_that_locks_is_reported_as_a_lockout_event(h: Harness) -> None:
    enrollment = await enroll(h)
    totp_id = enrollment.totp.totp_id
    for _ in range(4):
        with pytest.raises(InvalidCode):
            await h.service.verify("alice", wrong_code(enrollment, h.clock.now))
    assert EventType.LOCKOUT not in [e.type for e in h.store.events]
    with pytest.raises(InvalidCode):  # the fifth: this one engages the lock
        await h.service.verify("alice", wrong_code(enrollment, h.clock.now))
    assert [(e.type, e.totp_id, e.outcome) for e in h.store.events[-2:]] == [
        (EventType.VERIFY, totp_id, "rejected"),
        (EventType.LOCKOUT, totp_id, "temporary"),
    ]
    with pytest.raises(TooManyAttempts):  # refusals while locked engage nothing new
        await h.service.use_recovery_code("alice", enrollment.recovery_codes[0])
    assert event_types(h)[-1] == (EventType.USE_RECOVERY_CODE, "locked")


async def test_a_permanent_lock_is_reported_as_such(h: Harness) -> None:
    service = h.with_policy(Policy(lockout=LockoutPolicy(threshold=1, permanent_after=2)))
    enrollment = await enroll(h)
    for _ in range(2):
        with pytest.raises(InvalidCode):
            await service.use_recovery_code("alice", "zzzz-zzzz-zzzz")
        h.clock.advance(3600)
    locks = [(e.totp_id, e.outcome) for e in h.store.events if e.type is EventType.LOCKOUT]
    assert locks == [(enrollment.totp.totp_id, "temporary"), (enrollment.totp.totp_id, "permanent")]


async def test_checks_without_an_active_factor_are_audited(h: Harness) -> None:
    with pytest.raises(TotpNotFound):
        await h.service.verify("alice", "123456")
    with pytest.raises(TotpNotFound):
        await h.service.use_recovery_code("alice", "ckss-2skx-eb0w")
    assert [(e.type, e.totp_id, e.outcome) for e in h.store.events] == [
        (EventType.VERIFY, "", "not_found"),
        (EventType.USE_RECOVERY_CODE, "", "not_found"),
    ]


async def test_delete_events_name_what_was_deleted(h: Harness) -> None:
    active = await enroll(h)
    pending = await h.service.create(command())
    await h.service.delete("alice", pending.totp.totp_id)
    await h.service.delete("alice", None)  # "the active one", by no id
    await h.service.delete("alice", None)  # nothing left: no event
    deletes = [e.totp_id for e in h.store.events if e.type is EventType.DELETE]
    assert deletes == [pending.totp.totp_id, active.totp.totp_id]


async def test_create_passes_the_caller_to_the_event(h: Harness) -> None:
    await h.service.create(command(), caller="spiffe://billing")
    assert h.store.events[-1].caller == "spiffe://billing"


class EventsUnavailable(FakeStore):
    async def append_event(self, event: Event) -> None:
        raise StoreUnavailable("redis: TimeoutError")


async def test_a_lost_audit_event_does_not_fail_the_request(
    clock: FakeClock, keyring: Keyring, caplog: pytest.LogCaptureFixture
) -> None:
    store = EventsUnavailable(clock)
    service = TotpService(store, keyring, clock=clock, render_qr=FakeQrRenderer())
    enrollment = await service.create(command())
    activation = await service.activate("alice", enrollment.totp.totp_id, code(enrollment, T0))
    assert activation.totp.state is TotpState.ACTIVE
    # The service appends the events of what no store decision records, after the change.
    totp_id, codes = await service.regenerate_recovery_codes("alice")
    assert totp_id == enrollment.totp.totp_id
    assert "was not recorded" in caplog.text
    assert enrollment.secret not in caplog.text
    assert not any(c in caplog.text for c in codes)


async def test_the_store_records_the_events_of_its_decisions_itself(
    clock: FakeClock, keyring: Keyring
) -> None:
    """Creations, activations and checks are recorded by the store with the change (the
    Redis scripts append them), not through append_event, which here loses every event."""
    store = EventsUnavailable(clock)
    service = TotpService(store, keyring, clock=clock, render_qr=FakeQrRenderer())
    enrollment = await service.create(command())
    await service.activate("alice", enrollment.totp.totp_id, code(enrollment, T0), "web")
    clock.advance(60)
    await service.verify("alice", code(enrollment, clock.now), "web")
    await service.use_recovery_code("alice", enrollment.recovery_codes[0], "web")
    totp_id = enrollment.totp.totp_id
    assert store.events == [
        Event(EventType.CREATE, "alice", totp_id, "ok", T0, ""),
        Event(EventType.ACTIVATE, "alice", totp_id, "activated", T0, "web"),
        Event(EventType.VERIFY, "alice", totp_id, "accepted", T0 + 60, "web"),
        Event(EventType.USE_RECOVERY_CODE, "alice", totp_id, "accepted", T0 + 60, "web"),
    ]


async def test_each_event_is_counted_once_and_a_replay_as_such(
    clock: FakeClock, keyring: Keyring
) -> None:
    counted: list[tuple[EventType, str]] = []
    store = FakeStore(clock)
    policy = Policy(lockout=LockoutPolicy(threshold=1, permanent_after=2))
    service = TotpService(
        store,
        keyring,
        policy,
        clock=clock,
        render_qr=FakeQrRenderer(),
        count_event=lambda type_, outcome: counted.append((type_, outcome)),
    )
    enrollment = await service.create(command())
    await service.activate("alice", enrollment.totp.totp_id, code(enrollment, T0))
    clock.advance(60)
    await service.verify("alice", code(enrollment, clock.now))
    with pytest.raises(InvalidCode):  # a replay: the first failure, which locks (threshold 1)
        await service.verify("alice", code(enrollment, clock.now))
    with pytest.raises(TooManyAttempts):
        await service.use_recovery_code("alice", enrollment.recovery_codes[0])
    clock.advance(3600)
    with pytest.raises(InvalidCode):  # the second: locked for good
        await service.use_recovery_code("alice", "zzzz-zzzz-zzzz")
    with pytest.raises(TotpNotFound):
        await service.verify("bob", "123456")

    recorded = [(e.type, e.outcome) for e in store.events]
    assert recorded[3] == (EventType.VERIFY, "rejected")
    assert counted == [*recorded[:3], (EventType.VERIFY, "replayed"), *recorded[4:]]
    assert recorded[4:] == [
        (EventType.LOCKOUT, "temporary"),
        (EventType.USE_RECOVERY_CODE, "locked"),
        (EventType.USE_RECOVERY_CODE, "rejected"),
        (EventType.LOCKOUT, "permanent"),
        (EventType.VERIFY, "not_found"),
    ]


def test_policy_defaults() -> None:
    assert Policy() == Policy(
        default_issuer="totpd",
        activation_max_attempts=5,
        activation_window=1,
        verify_window=1,
        lockout=LockoutPolicy(threshold=5, base_seconds=60, max_seconds=3600, permanent_after=100),
    )
