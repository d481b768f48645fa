"""Key rotation end to end: enrollments made under an old key keep working while a new key
is primary, `rotate-keys` re-seals them, and they keep working once the old key is gone.
Recovery codes hashed under an old hashing key keep working until regenerated."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from tests.helpers import totp_code
from tests.live_server import server_env
from totpd.embedded_redis import EmbeddedRedis
from totpd.keyring import Keyring
from totpd.rotate import rotate_keys
from totpd.service import RECOVERY_CODES_PURPOSE, SECRET_PURPOSE
from totpd.store.rotation import Replacement, RotationStore, StoredRecord
from totpd.v1 import totp_service_pb2 as pb

from .conftest import StartServer

KEYS = {name: base64.b64encode(secrets.token_bytes(32)).decode() for name in "k1 k2 h1 h2".split()}


def keys_json(encryption: list[str], hashing: list[str]) -> dict[str, object]:
    """Sections whose first key id is the primary."""
    return {
        "encryption": {"primary": encryption[0], "keys": {k: KEYS[k] for k in encryption}},
        "hashing": {"primary": hashing[0], "keys": {k: KEYS[k] for k in hashing}},
    }


def keyring(tmp_path: Path, encryption: list[str], hashing: list[str]) -> Keyring:
    path = tmp_path / f"keys-{'-'.join(encryption + hashing)}.json"
    path.write_text(json.dumps(keys_json(encryption, hashing)))
    return Keyring.load(path)


async def _sealed_key_ids(client: aioredis.Redis) -> set[str]:
    """The encryption key id of every sealed value stored."""
    found = set()
    async for key in client.scan_iter(match="totpd:{*}:*"):
        if await client.type(key) != b"hash":
            continue
        record = await client.hgetall(key)
        if b"kid" in record:
            found.add(record[b"kid"].decode())
        if b"rck" in record:
            found.add(record[b"rck"].decode())
    return found


async def test_rotation_end_to_end(start_server: StartServer, tmp_path: Path) -> None:
    old = await start_server(keys=keyring(tmp_path, ["k1"], ["h1"]))
    clock = old.clock
    stub = old.stub()
    alice = await stub.CreateTotp(pb.CreateTotpRequest(user_id="alice", qr_code_size=64))
    await stub.ActivateTotp(
        pb.ActivateTotpRequest(
            user_id="alice", totp_id=alice.totp_id, code=totp_code(alice.secret, clock.now)
        )
    )
    bob = await stub.CreateTotp(pb.CreateTotpRequest(user_id="bob", qr_code_size=64))  # pending
    assert await _sealed_key_ids(old.redis) == {"k1"}

    # 1. A new primary key: old enrollments still verify, new ones use the new key.
    both = keyring(tmp_path, ["k2", "k1"], ["h2", "h1"])
    stub = (await start_server(keys=both)).stub()
    clock.advance(30)
    await stub.VerifyTotp(
        pb.VerifyTotpRequest(user_id="alice", code=totp_code(alice.secret, clock.now))
    )
    # A recovery code hashed under h1 still works while h2 is primary.
    used = await stub.UseRecoveryCode(
        pb.UseRecoveryCodeRequest(user_id="alice", recovery_code=alice.recovery_codes[0])
    )
    assert used.recovery_codes_remaining == len(alice.recovery_codes) - 1

    # 2. Rotate: both records are re-sealed; alice's codes stay hashed under h1.
    store = RotationStore(old.redis, "totpd")
    report = await rotate_keys(store, both, batch_size=2)
    assert (report.rotated, report.current, report.failed, report.changed) == (2, 0, 0, 0)
    assert report.old_hashing_keys == {"h1": 1}
    assert await _sealed_key_ids(old.redis) == {"k2"}
    # Resumable: a second run finds nothing to do.
    again = await rotate_keys(store, both)
    assert (again.rotated, again.current, again.remaining) == (0, 2, 0)

    # 3. The old encryption key is removed (h1 stays for alice's codes).
    new = keyring(tmp_path, ["k2"], ["h2", "h1"])
    stub = (await start_server(keys=new)).stub()
    clock.advance(30)
    await stub.VerifyTotp(
        pb.VerifyTotpRequest(user_id="alice", code=totp_code(alice.secret, clock.now))
    )
    await stub.UseRecoveryCode(
        pb.UseRecoveryCodeRequest(user_id="alice", recovery_code=alice.recovery_codes[1])
    )
    # bob's pending enrollment activates under k2, and its codes were re-hashed under h2.
    await stub.ActivateTotp(
        pb.ActivateTotpRequest(
            user_id="bob", totp_id=bob.totp_id, code=totp_code(bob.secret, clock.now)
        )
    )
    assert await old.redis.hget(await _active_key(old.redis, "bob"), "rk") == b"h2"
    only_h2 = (await start_server(keys=keyring(tmp_path, ["k2"], ["h2"]))).stub()
    await only_h2.UseRecoveryCode(
        pb.UseRecoveryCodeRequest(user_id="bob", recovery_code=bob.recovery_codes[0])
    )
    # Without h1, alice's codes no longer match (until she regenerates them) ...
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await only_h2.UseRecoveryCode(
            pb.UseRecoveryCodeRequest(user_id="alice", recovery_code=alice.recovery_codes[2])
        )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    # ... and regenerated codes are hashed under h2.
    regenerated = await only_h2.RegenerateRecoveryCodes(
        pb.RegenerateRecoveryCodesRequest(user_id="alice")
    )
    await only_h2.UseRecoveryCode(
        pb.UseRecoveryCodeRequest(user_id="alice", recovery_code=regenerated.recovery_codes[0])
    )
    final = await rotate_keys(store, keyring(tmp_path, ["k2"], ["h2"]))
    assert (final.current, final.old_hashing_keys) == (2, {})


async def _active_key(client: aioredis.Redis, user_id: str) -> str:
    from totpd.store.keys import UserKeys

    return UserKeys("totpd", user_id).active


async def test_a_record_changed_meanwhile_is_left_alone(
    start_server: StartServer, tmp_path: Path
) -> None:
    running = await start_server(keys=keyring(tmp_path, ["k1"], ["h1"]))
    created = await running.stub().CreateTotp(
        pb.CreateTotpRequest(user_id="carol", qr_code_size=64)
    )
    store = RotationStore(running.redis, "totpd")
    cursor, records = 0, []
    while True:
        cursor, batch = await store.scan(cursor, 100)
        records += batch
        if cursor == 0:
            break
    (record,) = records
    assert record.pending and record.totp_id == created.totp_id and record.user_id == "carol"
    new = keyring(tmp_path, ["k2", "k1"], ["h1"])
    sealed = new.reseal(record.secret, "secret", "carol", created.totp_id)
    await running.stub().DeleteTotp(pb.DeleteTotpRequest(user_id="carol", totp_id=created.totp_id))
    # Deleted between read and write: nothing is written, not even a key without a TTL.
    assert not await store.replace(record, Replacement(secret=sealed))
    assert not await running.redis.exists(record.key)


async def _scan_all(store: RotationStore) -> list[StoredRecord]:
    cursor, records = 0, []
    while True:
        cursor, batch = await store.scan(cursor, 100)
        records += batch
        if cursor == 0:
            return records


async def test_the_compare_and_set_covers_a_pending_records_codes(
    start_server: StartServer, tmp_path: Path
) -> None:
    """What was read of a pending record's sealed codes and digests is compared too, not
    only its secret: a write based on a stale read is refused whatever it would write."""
    running = await start_server(keys=keyring(tmp_path, ["k1"], ["h1"]))
    created = await running.stub().CreateTotp(pb.CreateTotpRequest(user_id="fay", qr_code_size=64))
    store = RotationStore(running.redis, "totpd")
    (stale,) = await _scan_all(store)
    assert stale.sealed_recovery_codes is not None
    new = keyring(tmp_path, ["k2", "k1"], ["h2", "h1"])
    bound = ("fay", created.totp_id)
    secret = new.reseal(stale.secret, SECRET_PURPOSE, *bound)

    # Another run re-seals the codes only; the secret stays as it was.
    codes = new.reseal(stale.sealed_recovery_codes, RECOVERY_CODES_PURPOSE, *bound)
    assert await store.replace(stale, Replacement(sealed_recovery_codes=codes))
    assert not await store.replace(stale, Replacement(secret=secret))
    (read,) = await _scan_all(store)
    assert (read.secret, read.sealed_recovery_codes) == (stale.secret, codes)

    # Another run re-hashes the digests only ('rk' and 'rh').
    plain = new.open(read.sealed_recovery_codes, RECOVERY_CODES_PURPOSE, *bound).decode()
    digests = [new.digest(code.replace("-", ""), "fay") for code in plain.split("\n")]
    assert await store.replace(read, Replacement(recovery_digests=("h2", digests)))
    assert not await store.replace(read, Replacement(secret=secret))
    (read,) = await _scan_all(store)
    assert (read.secret, read.recovery_key_id) == (stale.secret, "h2")
    assert await store.replace(read, Replacement(secret=secret))

    # The enrollment works: its codes open and match under the new keys.
    stub = (await start_server(keys=keyring(tmp_path, ["k2"], ["h2"]))).stub()
    await stub.ActivateTotp(
        pb.ActivateTotpRequest(
            user_id="fay",
            totp_id=created.totp_id,
            code=totp_code(created.secret, running.clock.now),
        )
    )
    used = await stub.UseRecoveryCode(
        pb.UseRecoveryCodeRequest(user_id="fay", recovery_code=created.recovery_codes[0])
    )
    assert used.recovery_codes_remaining == len(created.recovery_codes) - 1


async def test_an_active_record_replaced_meanwhile_is_left_alone(
    start_server: StartServer, tmp_path: Path
) -> None:
    running = await start_server(keys=keyring(tmp_path, ["k1"], ["h1"]))
    stub = running.stub()

    async def enroll() -> pb.CreateTotpResponse:
        created = await stub.CreateTotp(pb.CreateTotpRequest(user_id="gus", qr_code_size=64))
        code = totp_code(created.secret, running.clock.now)
        await stub.ActivateTotp(
            pb.ActivateTotpRequest(user_id="gus", totp_id=created.totp_id, code=code)
        )
        return created

    first = await enroll()
    store = RotationStore(running.redis, "totpd")
    (stale,) = await _scan_all(store)
    assert not stale.pending and stale.totp_id == first.totp_id
    second = await enroll()  # replaces the first factor between read and write
    new = keyring(tmp_path, ["k2", "k1"], ["h1"])
    sealed = new.reseal(stale.secret, SECRET_PURPOSE, "gus", first.totp_id)
    assert not await store.replace(stale, Replacement(secret=sealed))
    (read,) = await _scan_all(store)
    assert (read.totp_id, read.secret.key_id) == (second.totp_id, "k1")


async def test_rotation_counts_what_it_cannot_open(start_server: StartServer, tmp_path: Path):
    running = await start_server(keys=keyring(tmp_path, ["k1"], ["h1"]))
    await running.stub().CreateTotp(pb.CreateTotpRequest(user_id="dave", qr_code_size=64))
    report = await rotate_keys(RotationStore(running.redis), keyring(tmp_path, ["k2"], ["h1"]))
    assert (report.failed, report.rotated, report.remaining) == (1, 0, 1)


async def test_rotate_keys_command(
    start_server: StartServer, tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    running = await start_server(keys=keyring(tmp_path, ["k1"], ["h1"]))
    await running.stub().CreateTotp(pb.CreateTotpRequest(user_id="erin", qr_code_size=64))
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(keys_json(["k2", "k1"], ["h1"])))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = server_env(tmp_path, REDIS_URL=redis_server.url, KEYS_FILE=str(keys_file))
        return subprocess.run(
            [sys.executable, "-m", "totpd", "rotate-keys", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    done = run("--batch-size", "10")
    assert done.returncode == 0, done.stderr
    assert "rotated 1," in done.stdout and "remaining 0" in done.stdout
    done = run()
    assert done.returncode == 0, done.stderr
    assert "rotated 0, already current 1," in done.stdout
    assert run("--batch-size", "0").returncode == 2
