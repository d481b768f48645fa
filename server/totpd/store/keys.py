"""Every Redis key totpd uses, in one place.

All keys of one user share the hash tag ``{<user hash>}``, so each multi-key script runs on
one Redis Cluster slot. The tag is a hash of the user id rather than the id itself: user
ids are chosen by callers and may contain braces, and key names stay short.

    <prefix>:{<u>}:pending:<totp_id>   hash  a pending enrollment; expires with its TTL
    <prefix>:{<u>}:pending             zset  pending totp_ids scored by expiry (ms)
    <prefix>:{<u>}:idem:<request hash> str   CreateTotp idempotency key -> totp_id
    <prefix>:{<u>}:active              hash  the active TOTP
    <prefix>:{<u>}:recovery            set   keyed hashes of unused recovery codes
    <prefix>:{<u>}:lockout             hash  consecutive failures and lock state
    <prefix>:events                    stream  audit events (capped)
"""

from __future__ import annotations

import hashlib
import re


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
    def recovery(self) -> str:
        return f"{self._base}:recovery"

    @property
    def lockout(self) -> str:
        return f"{self._base}:lockout"


def events(prefix: str) -> str:
    return f"{prefix}:events"


def pending_key_pattern(prefix: str) -> str:
    """A regular expression that fully matches the pending enrollment keys of ``prefix``
    (``<prefix>:{<u>}:pending:<totp_id>``), not the pending index or other keys."""
    return re.escape(prefix) + r":\{[0-9a-f]{32}\}:pending:[^:]+"
