"""Redis side of key rotation: walk every stored enrollment in bounded batches and replace
its sealed fields with a compare-and-set, so rotation runs next to live traffic.

What is sealed where (see ``keys`` and ``redis_store``):

    active hash    core.kid/core.sec (the TOTP secret); rk = hashing key of its recovery
                   code digests (kept in the recovery set; they cannot be re-hashed)
    pending hash   core.kid/core.sec; rck/rcb (the recovery codes, sealed); rk/rh (their
                   digests and hashing key)
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as redis

from ..model import SealedSecret
from .redis_store import _load_script, _unavailable_on_redis_errors

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
# After "<prefix>": ":{<user hash>}:active" or ":{<user hash>}:pending:<totp_id>".
_RECORD = re.compile(rb":\{[0-9a-f]{32}\}:(?:(active)|pending:([A-Za-z0-9_-]+))")


@dataclass(frozen=True)
class StoredRecord:
    """One enrollment's sealed values as read; ``core`` is the compare-and-set token."""

    key: bytes
    pending: bool
    user_id: str
    totp_id: str
    secret: SealedSecret
    recovery_key_id: str  # hashing key of the recovery code digests
    sealed_recovery_codes: SealedSecret | None  # pending records only
    core: bytes


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
                pipe.hmget(key, ["core", "id", "rk", "rck", "rcb"])
            rows = await pipe.execute()
        records = []
        for (key, match), row in zip(found, rows, strict=True):
            core, active_id, rk, rck, rcb = cast(list[bytes | None], row)
            if core is None:
                continue  # expired or deleted between SCAN and read
            pending = match.group(1) is None
            totp_id = (match.group(2) if pending else active_id) or b""
            decoded: dict[str, Any] = json.loads(core)
            records.append(
                StoredRecord(
                    key=key,
                    pending=pending,
                    user_id=decoded["uid"],
                    totp_id=totp_id.decode(),
                    secret=SealedSecret(decoded["kid"], base64.b64decode(decoded["sec"])),
                    recovery_key_id=(rk or b"").decode(),
                    sealed_recovery_codes=SealedSecret(rck.decode(), rcb)
                    if pending and rck is not None and rcb is not None
                    else None,
                    core=core,
                )
            )
        return int(cursor), records

    @_unavailable_on_redis_errors
    async def replace(self, record: StoredRecord, new: Replacement) -> bool:
        """Write ``new`` into ``record`` if it is unchanged since it was read."""
        core = record.core
        if new.secret is not None:
            decoded = json.loads(core)
            decoded["kid"] = new.secret.key_id
            decoded["sec"] = base64.b64encode(new.secret.blob).decode()
            core = json.dumps(decoded, separators=(",", ":")).encode()
        fields: list[bytes | str] = []
        if new.sealed_recovery_codes is not None:
            fields += ["rck", new.sealed_recovery_codes.key_id]
            fields += ["rcb", new.sealed_recovery_codes.blob]
        if new.recovery_digests is not None:
            key_id, digests = new.recovery_digests
            fields += ["rk", key_id, "rh", b"".join(digests)]
        replaced = await self._reseal(keys=[record.key], args=[record.core, core, *fields])
        return bool(replaced)
