"""totpd works as a Redis ACL user restricted to its key prefix and the commands
docs/security.md lists: every RPC, the eviction check and key rotation."""

from __future__ import annotations

import json
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from tests.helpers import totp_code
from totpd.app import check_eviction_policy
from totpd.config import Settings
from totpd.embedded_redis import EmbeddedRedis
from totpd.keyring import Keyring
from totpd.rotate import rotate_keys
from totpd.store.redis_store import RedisStore, connect
from totpd.store.rotation import RotationStore
from totpd.v1 import totp_service_pb2 as pb

from .conftest import StartServer

# Keep in step with docs/security.md ("TLS and an ACL user").
ACL_RULES = [
    "on",
    ">s3cret-redis-password",
    "~totpd:*",
    "resetchannels",
    "-@all",
    "+@read",
    "+@write",
    "+@scripting",
    "+ping",
    "-@dangerous",
    "+info",
]


async def test_totpd_runs_as_a_restricted_acl_user(
    start_server: StartServer,
    redis_server: EmbeddedRedis,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    await redis_client.execute_command("ACL", "SETUSER", "totpd", "reset", *ACL_RULES)
    url = f"unix://totpd:s3cret-redis-password@{redis_server.socket}"
    client = connect(url)
    try:
        # The user really is restricted: other keys and admin commands are refused.
        assert await client.set("totpd:probe", "1")
        for command in (("SET", "other:key", "1"), ("FLUSHALL",), ("CONFIG", "GET", "*")):
            try:
                await client.execute_command(*command)
            except NoPermissionError:
                pass
            else:
                raise AssertionError(f"{command} was allowed")
        await client.delete("totpd:probe")

        store = RedisStore(client, prefix="totpd")
        await check_eviction_policy(store, Settings())
        running = await start_server(store=store)
        stub, clock = running.stub(), running.clock
        created = await stub.CreateTotp(pb.CreateTotpRequest(user_id="acl", qr_code_size=64))
        await stub.ActivateTotp(
            pb.ActivateTotpRequest(
                user_id="acl", totp_id=created.totp_id, code=totp_code(created.secret, clock.now)
            )
        )
        clock.advance(30)
        await stub.VerifyTotp(
            pb.VerifyTotpRequest(user_id="acl", code=totp_code(created.secret, clock.now))
        )
        await stub.UseRecoveryCode(
            pb.UseRecoveryCodeRequest(user_id="acl", recovery_code=created.recovery_codes[0])
        )
        await stub.RegenerateRecoveryCodes(pb.RegenerateRecoveryCodesRequest(user_id="acl"))
        await stub.GetTotp(pb.GetTotpRequest(user_id="acl"))
        await stub.CreateTotp(pb.CreateTotpRequest(user_id="acl", qr_code_size=64))

        keys = json.loads((await _keys_json(running.keyring, tmp_path)).read_text())
        report = await rotate_keys(RotationStore(client), Keyring.load(_write(tmp_path, keys)))
        assert (report.failed, report.changed) == (0, 0)
        assert report.scanned == 2

        await stub.DeleteTotp(pb.DeleteTotpRequest(user_id="acl"))
    finally:
        await client.aclose()
        await redis_client.execute_command("ACL", "DELUSER", "totpd")


async def _keys_json(keyring: Keyring, tmp_path: Path) -> Path:
    path = tmp_path / "current.json"
    keyring.write_new(path)
    return path


def _write(tmp_path: Path, keys: dict) -> Path:
    """The same keys with a new primary encryption key, so rotation has work to do."""
    import base64
    import secrets

    keys["encryption"]["keys"]["k-new"] = base64.b64encode(secrets.token_bytes(32)).decode()
    keys["encryption"]["primary"] = "k-new"
    path = tmp_path / "rotated.json"
    path.write_text(json.dumps(keys))
    return path
