"""Every Redis key totpd uses, and every field of its hashes, in one place.

All keys of one user share the hash tag ``{<user hash>}``, so each multi-key script runs on
one Redis Cluster slot. The tag is a hash of the user id rather than the id itself: user
ids are chosen by callers and may contain braces, and key names stay short.

    <prefix>:{<u>}:pending:<totp_id>   hash  a pending enrollment; expires with its TTL
    <prefix>:{<u>}:pending             zset  pending totp_ids scored by expiry (ms)
    <prefix>:{<u>}:idem:<request hash> str   CreateTotp idempotency key -> totp_id
    <prefix>:{<u>}:active              hash  the active TOTP and its unused recovery codes
    <prefix>:{<u>}:lockout             hash  consecutive failures and lock state
    <prefix>:events                    stream  audit events (capped)

The factor's fields, the same in a pending and an active hash (activate.lua copies them):

    uid   user id
    p     parameters "<algorithm>:<digits>:<period>", e.g. "SHA1:6:30"
    iss   issuer
    acc   account name
    kid   id of the encryption key that sealed sec
    sec   the TOTP secret sealed with AES-256-GCM, raw: nonce || ciphertext || tag (48 B)
    ct    create time (ms)
    rk    id of the hashing key of the recovery code digests

Only in a pending hash: ``rh`` the recovery code digests (32 B each, concatenated), ``rck``
and ``rcb`` the recovery codes sealed (key id, blob; only for CreateTotp retries), ``fp``
the request fingerprint, ``exp`` expire time (ms), ``fails`` failed activation attempts.

Only in an active hash: ``id`` its totp_id, ``at`` activate time (ms), ``step`` the time
step of the last accepted code, ``used`` when it was accepted (ms), ``rn`` how many recovery
codes are unused, and one field per unused recovery code: ``RECOVERY_FIELD_PREFIX`` ("#")
followed by its 32-byte digest, with an empty value. No other field name starts with "#".

Why so many small fields: Redis keeps a hash whose fields and values are all at most
``hash-max-ziplist-value`` (64 B by default) and that has at most
``hash-max-ziplist-entries`` (512) of them as one compact ziplist (listpack on Redis 7),
about a third of the memory of a hashtable. An active user is then one key of about 0.75
KiB (README.md, "Redis keys"). A longer value (a user id or account name over 64 bytes;
issuers are at most 64) makes that one hash a hashtable: it works the same, only bigger.
A pending hash is a hashtable anyway (rh, rcb); it lives at most as long as its TTL.

The lockout hash holds ``fails``, ``until`` (ms) and ``hard`` ("1"): see lockout.lua.

The events stream is the one key outside every user's hash tag. Each entry has the fields
``type``, ``user_id``, ``totp_id``, ``outcome``, ``time`` (ms) and ``caller``, in this order,
and each XADD caps it with ``MAXLEN ~``. Who appends:

* The events of a new enrollment or a decision (``totp.create``, ``totp.activate``,
  ``totp.verify``, ``recovery_code.use`` and the ``lockout.engage`` a failure may add)
  are appended by the script that makes the change (audit.lua), on one server and
  Sentinel's primary, where the stream is one of its KEYS: the change and its events are
  kept together or not at all, in one command. On Redis Cluster the stream is in another
  slot than the user's keys, which a script may not touch, so the store appends the same
  events with XADDs of its own right after it.
* Every other event is appended by the service through ``append_event``, after the state
  change it reports: ``recovery_codes.regenerate``, ``totp.delete``, and the
  ``not_found`` of an activation or a verification refused before any script ran.

No data was released under an earlier layout, so none needs migrating.
"""

from __future__ import annotations

import functools
import hashlib
import re

#: Starts the name of each recovery code field of an active hash (recovery.lua has it too).
RECOVERY_FIELD_PREFIX = b"#"


@functools.lru_cache(maxsize=4096)  # a call computes a user's keys once per store operation
def _short_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class UserKeys:
    def __init__(self, prefix: str, user_id: str) -> None:
        self._base = f"{prefix}:{{{_short_hash(user_id)}}}"

    def pending(self, totp_id: str) -> str:
        return f"{self._base}:pending:{totp_id}"

    @property
    def pending_index(self) -> str:
        return f"{self._base}:pending"

    def idempotency(self, request_id: str) -> str:
        return f"{self._base}:idem:{_short_hash(request_id)}"

    @property
    def active(self) -> str:
        return f"{self._base}:active"

    @property
    def lockout(self) -> str:
        return f"{self._base}:lockout"


def events(prefix: str) -> str:
    return f"{prefix}:events"


def pending_key_pattern(prefix: str) -> str:
    """A regular expression that fully matches the pending enrollment keys of ``prefix``
    (``<prefix>:{<u>}:pending:<totp_id>``), not the pending index or other keys."""
    return re.escape(prefix) + r":\{[0-9a-f]{32}\}:pending:[^:]+"
