"""The deciding scripts append their audit events themselves on one server (and Sentinel's
primary): the same events as the store's own XADDs after the script (the Redis Cluster
way), one command fewer, and kept with the decision or lost with it, never one alone."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from tests.conftest import FakeClock
from tests.integration.audit_flows import (
    APPENDED_BY_THE_SERVICE,
    EXPECTED,
    code_at,
    command,
    run_decisions,
    wrong_code,
)
from totpd.errors import StoreUnavailable
from totpd.keyring import Keyring
from totpd.model import Lockout
from totpd.service import TotpService
from totpd.store.redis_store import RedisStore

Fields = list[tuple[bytes, bytes]]


async def stream(redis: aioredis.Redis, prefix: str) -> list[Fields]:
    """Each event of ``<prefix>:events`` as its fields and values, in order, as stored."""
    return [list(fields.items()) for _, fields in await redis.xrange(f"{prefix}:events")]


def summary(recorded: list[Fields]) -> list[tuple[str, str]]:
    return [(dict(e)[b"type"].decode(), dict(e)[b"outcome"].decode()) for e in recorded]


async def test_scripts_and_separate_xadds_write_the_same_events(
    redis_client: aioredis.Redis,
) -> None:
    appended: dict[str, int] = {}
    for prefix, in_scripts in (("scripts", True), ("after", False)):
        store = RedisStore(redis_client, prefix, events_in_scripts=in_scripts)
        appended[prefix] = 0

        def observe(operation: str, _seconds: float, error: str | None, p: str = prefix) -> None:
            assert error is None, (operation, error)
            appended[p] += operation == "append_event"

        store.observe_call = observe
        await run_decisions(store)

    in_scripts = await stream(redis_client, "scripts")
    assert summary(in_scripts) == EXPECTED
    assert in_scripts == await stream(redis_client, "after")  # byte for byte, field order too
    # One XADD of the store's own per event, or only for those of no decision.
    assert appended == {"after": len(EXPECTED), "scripts": APPENDED_BY_THE_SERVICE}


@pytest.fixture
def service(redis_client: aioredis.Redis, clock: FakeClock) -> TotpService:
    return TotpService(RedisStore(redis_client, "totpd"), Keyring.generate(), clock=clock)


async def test_a_decision_that_cannot_be_recorded_is_not_made(
    redis_client: aioredis.Redis, service: TotpService, clock: FakeClock
) -> None:
    """The events key holding another type: XADD would fail after the decision's writes,
    which Redis does not undo, so the script finds out first and decides nothing."""
    created = await service.create(command("alice"))
    totp_id = created.totp.totp_id
    await redis_client.set("totpd:events", "not a stream")

    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await service.activate("alice", totp_id, code_at(created, clock.now))
    assert (await service.status("alice")).active is None
    assert [p.totp_id for p in (await service.status("alice")).pending] == [totp_id]

    await redis_client.delete("totpd:events")
    await service.activate("alice", totp_id, code_at(created, clock.now))
    await redis_client.set("totpd:events", "not a stream")
    clock.advance(30)
    checks = [
        lambda: service.verify("alice", code_at(created, clock.now)),
        lambda: service.verify("alice", wrong_code(created, clock.now)),
        lambda: service.use_recovery_code("alice", created.recovery_codes[0]),
        lambda: service.use_recovery_code("alice", "zzzz-zzzz-zzzz"),
    ]
    for check in checks:
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await check()
    status = await service.status("alice")
    assert status.active is not None and status.active.last_used_time is None
    assert status.recovery_codes_remaining == 10
    assert status.lockout == Lockout()


async def test_an_enrollment_that_cannot_be_recorded_is_not_saved(
    redis_client: aioredis.Redis, service: TotpService
) -> None:
    """create.lua records its event too: with the events key unusable it saves nothing,
    not even the idempotency key (a retry then creates, and records, afresh)."""
    await redis_client.set("totpd:events", "not a stream")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await service.create(command("alice", request_id="retry-1"))
    assert (await service.status("alice")).pending == ()
    await redis_client.delete("totpd:events")
    created = await service.create(command("alice", request_id="retry-1"))
    assert [p.totp_id for p in (await service.status("alice")).pending] == [created.totp.totp_id]
    assert summary(await stream(redis_client, "totpd")) == [("totp.create", "ok")]
    # The retry of a CreateTotp that was made answers with it, and records nothing new.
    again = await service.create(command("alice", request_id="retry-1"))
    assert again.totp.totp_id == created.totp.totp_id
    assert summary(await stream(redis_client, "totpd")) == [("totp.create", "ok")]


async def test_a_script_refused_for_lack_of_memory_leaves_neither(
    redis_client: aioredis.Redis, service: TotpService, clock: FakeClock
) -> None:
    """Redis refuses a script's first write at maxmemory (and lets the later ones through,
    the XADD among them): UNAVAILABLE, with neither the decision nor its event."""
    created = await service.create(command("alice"))
    await service.activate("alice", created.totp.totp_id, code_at(created, clock.now))
    clock.advance(30)
    before = await stream(redis_client, "totpd")
    await redis_client.config_set("maxmemory", "1")  # noeviction: every write is refused
    try:
        with pytest.raises(StoreUnavailable, match="OOM"):
            await service.verify("alice", code_at(created, clock.now))
        with pytest.raises(StoreUnavailable, match="OOM"):  # a failure to count: refused too
            await service.verify("alice", wrong_code(created, clock.now))
    finally:
        await redis_client.config_set("maxmemory", "0")
    assert await stream(redis_client, "totpd") == before
    status = await service.status("alice")
    assert status.active is not None and status.active.last_used_time is None
    assert status.lockout == Lockout()

    await service.verify("alice", code_at(created, clock.now))  # now it is made
    assert summary((await stream(redis_client, "totpd"))[len(before) :]) == [
        ("totp.verify", "accepted")
    ]


async def test_a_write_replicas_did_not_acknowledge_keeps_its_event(
    redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    """WAIT follows the script (no replica here: it times out): the caller gets UNAVAILABLE,
    and the primary has the decision and its event, together."""
    store = RedisStore(redis_client, "totpd", min_replicas_ack=1, replica_ack_timeout=0.001)
    service = TotpService(store, Keyring.generate(), clock=clock)
    created = await service.create(command("alice"))

    with pytest.raises(StoreUnavailable, match="replicas acknowledged"):
        await service.activate("alice", created.totp.totp_id, code_at(created, clock.now))

    assert (await service.status("alice")).active is not None
    assert summary(await stream(redis_client, "totpd")) == [
        ("totp.create", "ok"),
        ("totp.activate", "activated"),
    ]
