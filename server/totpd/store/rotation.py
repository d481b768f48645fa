"""Redis side of key rotation: walk every stored enrollment in bounded batches and replace
its sealed fields with a compare-and-set, so rotation runs next to live traffic.

What is sealed where (``keys`` names every field):

    active hash    kid/sec (the TOTP secret); rk = hashing key of its recovery code
                   digests (its '#' fields; they cannot be re-hashed)
    pending hash   kid/sec; rck/rcb (the recovery codes, sealed); rk/rh (their hashing
                   key and digests)

The compare-and-set token is what was read of the fields a replacement may change: 'sec'
of an active record; 'sec', 'rcb' and 'rk' of a pending one. Every seal draws a fresh
nonce, so 'sec' and 'rcb' change whenever their record is re-sealed or replaced.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import redis.asyncio as redis

from ..model import SealedSecret
from .redis_store import _load_script, _unavailable_on_redis_errors

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
# After "<prefix>": ":{<user hash>}:active" or ":{<user hash>}:pending:<totp_id>".
_RECORD = re.compile(rb":\{[0-9a-f]{32}\}:(?:(active)|pending:([A-Za-z0-9_-]+))")
_FIELDS = ["id", "uid", "kid", "sec", "rk", "rck", "rcb"]  # what scan() reads of a record


@dataclass(frozen=True)
class StoredRecord:
    """One enrollment's sealed values as read; ``compare`` is the compare-and-set token."""

    key: bytes
    pending: bool
    user_id: str
    totp_id: str
    secret: SealedSecret
    recovery_key_id: str  # hashing key of the recovery code digests
    sealed_recovery_codes: SealedSecret | None  # pending records only
    compare: tuple[tuple[str, bytes], ...]  # (field, value as read): see the module doc


@dataclass(frozen=True)
class Replacement:
    secret: SealedSecret | None = None  # None: keep
    sealed_recovery_codes: SealedSecret | None = None
    recovery_digests: tuple[str, Sequence[bytes]] | None = None  # (hashing key id, digests)


class RotationStore:
    def __init__(self, client: redis.Redis, prefix: str = "totpd") -> None:
        self._redis = client
        self._prefix = prefix.encode()
        self._match = _GLOB_SPECIAL.sub(r"\\\1", prefix) + ":{*}:*"
        self._reseal = client.register_script(_load_script("reseal"))

    @_unavailable_on_redis_errors
    async def scan(self, cursor: int, count: int) -> tuple[int, list[StoredRecord]]:
        """One SCAN step: the next cursor (0 when done) and the records it found."""
        cursor, keys = await self._redis.scan(cursor, match=self._match, count=count)
        found: list[tuple[bytes, re.Match[bytes]]] = []
        for key in cast(list[bytes], keys):
            match = _RECORD.fullmatch(key, len(self._prefix))
            if match and key.startswith(self._prefix):
                found.append((key, match))
        if not found:
            return int(cursor), []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, _ in found:
                pipe.hmget(key, _FIELDS)
            rows = await pipe.execute()
        records = []
        for (key, match), row in zip(found, rows, strict=True):
            record = _stored_record(key, match, cast(list[bytes | None], row))
            if record is not None:
                records.append(record)
        return int(cursor), records

    @_unavailable_on_redis_errors
    async def replace(self, record: StoredRecord, new: Replacement) -> bool:
        """Write ``new`` into ``record`` if it is unchanged since it was read."""
        fields: list[bytes | str] = []
        if new.secret is not None:
            fields += ["kid", new.secret.key_id, "sec", new.secret.blob]
        if new.sealed_recovery_codes is not None:
            fields += ["rck", new.sealed_recovery_codes.key_id]
            fields += ["rcb", new.sealed_recovery_codes.blob]
        if new.recovery_digests is not None:
            key_id, digests = new.recovery_digests
            fields += ["rk", key_id, "rh", b"".join(digests)]
        compare = [item for pair in record.compare for item in pair]
        args = [len(record.compare), *compare, *fields]
        return bool(await self._reseal(keys=[record.key], args=args))


def _stored_record(
    key: bytes, match: re.Match[bytes], row: list[bytes | None]
) -> StoredRecord | None:
    """The record from its ``_FIELDS``, or None if it is gone (expired or deleted between
    SCAN and read)."""
    active_id, uid, kid, sec, rk, rck, rcb = row
    if uid is None or kid is None or sec is None:
        return None
    pending = match.group(1) is None
    totp_id = (match.group(2) if pending else active_id) or b""
    compare = [("sec", sec)]
    codes = None
    if pending and rck is not None and rcb is not None:
        codes = SealedSecret(rck.decode(), rcb)
        compare += [("rcb", rcb), ("rk", rk or b"")]
    return StoredRecord(
        key=key,
        pending=pending,
        user_id=uid.decode(),
        totp_id=totp_id.decode(),
        secret=SealedSecret(kid.decode(), sec),
        recovery_key_id=(rk or b"").decode(),
        sealed_recovery_codes=codes,
        compare=tuple(compare),
    )
