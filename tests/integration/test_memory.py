"""What an enrollment costs in Redis (server/totpd/store/keys.py has the layout): an active
user is one compact hash, its recovery codes included, at most 1 KiB of MEMORY USAGE with
Redis's default hash-max-ziplist-* settings. Longer values only cost more memory."""

from __future__ import annotations

import redis.asyncio as aioredis

from tests.conftest import Totpd
from tests.integration.flows import (
    STEP,
    activate,
    create,
    enroll,
    get,
    use_recovery_code,
    verify_at,
)
from totpd.store.keys import RECOVERY_FIELD_PREFIX, UserKeys
from totpd.v1 import totp_service_pb2 as pb

KIB = 1024
COMPACT = {b"ziplist", b"listpack"}  # Redis 6 / Redis 7 names of the small hash encoding
# A typical user: an id of about 20 characters, and a service's issuer and account name.
USER_ID = "u_8f14e45fceea167a5a"
TYPICAL = {"issuer": "Example Co", "account_name": "user123@example.com"}


async def _user_keys(redis: aioredis.Redis, user_id: str) -> list[bytes]:
    """Every key of the user: they all start with "<prefix>:{<user hash>}:"."""
    tag = UserKeys("totpd", user_id).active.removesuffix("active")
    return sorted([key async for key in redis.scan_iter(match=f"{tag}*", count=1000)])


async def _memory_usage(redis: aioredis.Redis, keys: list[bytes]) -> int:
    return sum([int(await redis.memory_usage(key, samples=0) or 0) for key in keys])


async def _recovery_fields(redis: aioredis.Redis, user_id: str) -> list[bytes]:
    fields = await redis.hkeys(UserKeys("totpd", user_id).active)
    return [f for f in fields if f.startswith(RECOVERY_FIELD_PREFIX)]


async def test_an_active_user_is_one_compact_hash_of_at_most_1_kib(totpd: Totpd) -> None:
    redis = totpd.redis
    # The target holds for Redis's defaults, which the test server keeps.
    for name, default in (("hash-max-ziplist-value", "64"), ("hash-max-ziplist-entries", "512")):
        assert (await redis.config_get(name))[name] == default
    # With a request_id, the idempotency key outlives the activation (until the
    # enrollment's TTL): the largest an active user gets.
    created = await create(totpd, USER_ID, request_id="create-1", **TYPICAL)
    await activate(totpd, created)
    await verify_at(totpd, created, totpd.clock.now + STEP)  # also sets 'used'

    keys = await _user_keys(redis, USER_ID)
    user_keys = UserKeys("totpd", USER_ID)
    active = user_keys.active.encode()
    assert keys == sorted([active, user_keys.idempotency("create-1").encode()])
    assert await redis.object("encoding", active) in COMPACT
    assert len(await _recovery_fields(redis, USER_ID)) == 10
    used = await _memory_usage(redis, keys)
    assert used <= KIB, f"an active user takes {used} B"

    # Without the idempotency key (or once it expired): the active hash alone.
    await redis.delete(*[key for key in keys if key != active])
    assert await _memory_usage(redis, [active]) <= used


async def test_recovery_code_fields_and_their_count_stay_in_step(totpd: Totpd) -> None:
    redis = totpd.redis
    enrolled = await enroll(totpd, USER_ID, **TYPICAL)
    active = UserKeys("totpd", USER_ID).active

    async def remaining() -> int:
        count = (await get(totpd, USER_ID)).recovery_codes_remaining
        fields = await _recovery_fields(redis, USER_ID)
        assert count == int(await redis.hget(active, "rn")) == len(fields)
        return count

    assert await remaining() == 10
    for code in enrolled.recovery_codes[:3]:
        await use_recovery_code(totpd, USER_ID, code)
    assert await remaining() == 7
    regenerated = await totpd.stub.RegenerateRecoveryCodes(
        pb.RegenerateRecoveryCodesRequest(user_id=USER_ID)
    )
    # Every old code field went in the same step as the new ones came.
    assert await remaining() == 10
    used = await use_recovery_code(totpd, USER_ID, regenerated.recovery_codes[0])
    assert used.recovery_codes_remaining == await remaining() == 9
    assert await redis.object("encoding", active) in COMPACT


async def test_a_value_over_64_bytes_costs_memory_not_function(totpd: Totpd) -> None:
    """A long account name makes the active hash a hashtable: bigger, the same otherwise."""
    redis = totpd.redis
    account = "a-very-long-account-name." * 4  # 100 bytes
    enrolled = await enroll(totpd, USER_ID, issuer="Example Co", account_name=account)
    active = UserKeys("totpd", USER_ID).active
    assert await redis.object("encoding", active) == b"hashtable"

    await verify_at(totpd, enrolled, totpd.clock.now + STEP)
    used = await use_recovery_code(totpd, USER_ID, enrolled.recovery_codes[0])
    assert used.recovery_codes_remaining == 9
    status = await get(totpd, USER_ID)
    assert status.active_totp.account_name == account
    assert status.recovery_codes_remaining == len(await _recovery_fields(redis, USER_ID)) == 9
