"""``totpd_enrollments_expired_total`` of a real ``python -m totpd``: counted from Redis
keyspace notifications for pending enrollments only, and absent (0, one warning, startup
unharmed) where the Redis user may neither CONFIG nor PSUBSCRIBE.

No sleeps: a key given a 1 ms TTL is expired on the spot by reading it (Redis publishes
the event before it answers), and every wait polls with a deadline. Events reach the
listener in publication order, so once the counter shows the last expiry of a sequence it
has seen every earlier one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
import redis.asyncio

from tests.helpers import totp_code
from tests.live_server import TotpdProcess, metrics_url, scrape, value
from tests.security.test_redis_acl import ACL_RULES
from totpd.embedded_redis import EmbeddedRedis
from totpd.store.expiry import ExpiryListener, notify_flags_with
from totpd.store.keys import UserKeys
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

EXPIRED = "totpd_enrollments_expired_total"
DEADLINE = 10.0


def expired_count(url: str) -> float:
    return value(scrape(url)[1], EXPIRED)


def wait_for_count(url: str, expected: float) -> None:
    deadline = time.monotonic() + DEADLINE
    while (count := expired_count(url)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a condition with a deadline, not a fixed wait
    assert count == expected


def expire_now(client: redis.Redis, key: str) -> None:
    """Give ``key`` a 1 ms TTL and read it until Redis has expired it (and published)."""
    assert client.pexpire(key, 1), f"{key} does not exist"
    deadline = time.monotonic() + DEADLINE
    while client.exists(key):
        assert time.monotonic() < deadline, f"{key} did not expire"
        time.sleep(0.002)


def wait_subscribed(client: redis.Redis) -> None:
    """Until the server's listener has its pattern subscription on this Redis."""
    deadline = time.monotonic() + DEADLINE
    while client.execute_command("PUBSUB", "NUMPAT") < 1:
        assert time.monotonic() < deadline, "the expiry listener never subscribed"
        time.sleep(0.02)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TotpdProcess]:
    process = TotpdProcess(tmp_path / "data", METRICS_LISTEN="127.0.0.1:0")
    process.start()
    yield process
    assert process.stop() == 0, process.log


async def test_only_pending_enrollments_that_expire_count(server: TotpdProcess) -> None:
    url = metrics_url(server)
    socket = server.data_dir / "redis" / "redis.sock"
    admin = redis.Redis(unix_socket_path=str(socket), decode_responses=True)
    try:
        wait_subscribed(admin)
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb_grpc.TotpServiceStub(channel)

            async def create(user: str, request_id: str = "") -> pb.CreateTotpResponse:
                return await stub.CreateTotp(
                    pb.CreateTotpRequest(user_id=user, expiration_minutes=5, request_id=request_id)
                )

            # Activated: its pending key is gone by promotion, and the active one stays.
            activated = await create("exp-activated")
            await stub.ActivateTotp(
                pb.ActivateTotpRequest(
                    user_id="exp-activated",
                    totp_id=activated.totp_id,
                    code=totp_code(activated.secret, time.time()),
                )
            )
            # Deleted while pending: a del event, not an expired one.
            deleted = await create("exp-deleted")
            await stub.DeleteTotp(
                pb.DeleteTotpRequest(user_id="exp-deleted", totp_id=deleted.totp_id)
            )
            expiring = await create("exp-user", request_id="exp-req-1")

        keys = UserKeys("totpd", "exp-user")
        assert admin.exists(UserKeys("totpd", "exp-deleted").pending(deleted.totp_id)) == 0
        # Keys that are not pending enrollments of this prefix: never counted.
        expire_now(admin, keys.idempotency("exp-req-1"))
        admin.set("other:{0123456789abcdef0123456789abcdef}:pending:totp-x", "1")
        expire_now(admin, "other:{0123456789abcdef0123456789abcdef}:pending:totp-x")
        assert expired_count(url) == 0
        expire_now(admin, keys.pending(expiring.totp_id))
        wait_for_count(url, 1)
        # The index expiring (its last entry gone) is not an enrollment either; a second
        # pending expiry after it shows the listener has seen it, and counted only that.
        expire_now(admin, keys.pending_index)
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb_grpc.TotpServiceStub(channel)
            second = await stub.CreateTotp(
                pb.CreateTotpRequest(user_id="exp-user", expiration_minutes=5)
            )
        expire_now(admin, keys.pending(second.totp_id))
        wait_for_count(url, 2)
        assert UserKeys("totpd", "exp-activated").active in set(admin.keys("totpd:*"))
    finally:
        admin.close()
    assert "totpd_enrollments_expired_total is unavailable" not in server.log


# docs/security.md ("TLS and an ACL user"): the base rules (one source: test_redis_acl),
# with this test's password, and what the metric adds.
BASE_RULES = [">exp-redis-password" if r.startswith(">") else r for r in ACL_RULES]
METRIC_RULES = ["+psubscribe", "+punsubscribe", "&__keyevent@*__:expired", "+config|get"]
METRIC_RULES += ["+config|set"]


@pytest.mark.parametrize("allowed", [False, True], ids=["refused", "documented-rules"])
def test_an_acl_user_without_config_or_psubscribe_still_serves(
    redis_server: EmbeddedRedis, tmp_path: Path, allowed: bool
) -> None:
    admin = redis.Redis(unix_socket_path=str(redis_server.socket), decode_responses=True)
    before = admin.config_get("notify-keyspace-events")["notify-keyspace-events"]
    admin.config_set("notify-keyspace-events", "")
    admin.execute_command(
        "ACL", "SETUSER", "totpd-exp", "reset", *BASE_RULES, *(METRIC_RULES if allowed else [])
    )
    process = TotpdProcess(
        tmp_path / "data",
        REDIS_URL=f"unix://totpd-exp:exp-redis-password@{redis_server.socket}",
    )
    try:
        process.start()
        url = metrics_url(process)
        if allowed:
            wait_subscribed(admin)
            assert admin.config_get("notify-keyspace-events")["notify-keyspace-events"] in (
                "xE",
                "Ex",
            )
        else:
            process.wait_for_lines("totpd_enrollments_expired_total is unavailable")
            assert admin.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
        with grpc.insecure_channel(process.address) as channel:
            created = pb_grpc.TotpServiceStub(channel).CreateTotp(
                pb.CreateTotpRequest(user_id="exp-acl", expiration_minutes=5)
            )
        expire_now(admin, UserKeys("totpd", "exp-acl").pending(created.totp_id))
        if allowed:
            wait_for_count(url, 1)
        else:
            assert expired_count(url) == 0
        warnings = [line for line in process.lines if "unavailable:" in line]
        assert len(warnings) == (0 if allowed else 1), process.log
        assert process.stop() == 0, process.log
    finally:
        process.stop()
        admin.execute_command("ACL", "DELUSER", "totpd-exp")
        admin.config_set("notify-keyspace-events", before)
        admin.delete(UserKeys("totpd", "exp-acl").pending_index)
        admin.close()


def test_notify_flags_keep_the_existing_ones() -> None:
    assert notify_flags_with("") == "Ex"
    assert notify_flags_with("Kg") == "KgEx"
    assert notify_flags_with("xE") is None
    assert notify_flags_with("AKE") is None  # A includes x
    assert notify_flags_with("KA") == "KAE"


def test_only_pending_enrollment_keys_of_the_prefix_match() -> None:
    listener = ExpiryListener(redis.asyncio.Redis(), "totpd", lambda: None)
    keys = UserKeys("totpd", "someone")
    assert listener.matches(keys.pending("totp-abc").encode())
    for other in (
        keys.pending_index,
        keys.idempotency("r"),
        keys.active,
        keys.lockout,
        UserKeys("totpd2", "someone").pending("totp-abc"),
        UserKeys("totp", "someone").pending("totp-abc"),
        "totpd:events",
    ):
        assert not listener.matches(other), other
