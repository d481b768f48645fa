"""Keys that protect data at rest: AES-256-GCM for TOTP secrets, HMAC-SHA256 for recovery codes.

The keys file (``TOTPD_KEYS_FILE``) is JSON and never lives in Redis::

    {
      "encryption": {"primary": "k1", "keys": {"k1": "<base64 of 32 random bytes>"}},
      "hashing":    {"primary": "h1", "keys": {"h1": "<base64 of 32 random bytes>"}}
    }

New writes use each section's primary key; reads use the key id stored with the record, so
keys can rotate: add a key, make it primary, and the old one keeps decrypting what it wrote.
``totpd rotate-keys`` (``totpd.rotate``) then re-encrypts every stored secret under the
primary, after which the old encryption key can be removed. Recovery codes of active
factors are kept only as keyed hashes, which cannot be recomputed: an old hashing key stays
until no stored code uses it (its users regenerated their codes).
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .model import SealedSecret

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


class KeyringError(Exception):
    """The keys file is missing, unreadable or malformed (a startup error)."""


class DecryptionError(Exception):
    """A sealed value does not open: wrong key, wrong record, or tampered with."""


def _associated_data(purpose: str, *parts: str) -> bytes:
    # Length-prefixed so ("ab", "c") and ("a", "bc") can never bind to the same bytes.
    out = bytearray(b"totpd/v1/" + purpose.encode())
    for part in parts:
        raw = part.encode()
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


@dataclass(frozen=True)
class _KeySet:
    primary: str
    keys: Mapping[str, bytes]

    @classmethod
    def parse(cls, section: str, value: object) -> _KeySet:
        if not isinstance(value, dict):
            raise KeyringError(f"keys file: '{section}' must be an object")
        primary, keys = value.get("primary"), value.get("keys")
        if not isinstance(primary, str) or not isinstance(keys, dict) or not keys:
            raise KeyringError(f"keys file: '{section}' needs 'primary' and non-empty 'keys'")
        decoded: dict[str, bytes] = {}
        for key_id, encoded in keys.items():
            try:
                raw = base64.b64decode(str(encoded), validate=True)
            except ValueError as exc:  # binascii.Error, or non-ASCII text
                raise KeyringError(f"keys file: {section} key {key_id!r} is not base64") from exc
            if len(raw) != KEY_BYTES:
                raise KeyringError(f"keys file: {section} key {key_id!r} must be 32 bytes")
            decoded[key_id] = raw
        if primary not in decoded:
            raise KeyringError(f"keys file: {section} primary {primary!r} is not in its keys")
        return cls(primary, decoded)

    def to_json(self) -> dict[str, object]:
        return {
            "primary": self.primary,
            "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()},
        }


class Keyring:
    def __init__(self, encryption: _KeySet, hashing: _KeySet) -> None:
        self._encryption = encryption
        self._hashing = hashing
        # One cipher object per key, made once: every verification opens a secret.
        self._ciphers = {key_id: AESGCM(key) for key_id, key in encryption.keys.items()}
        # Likewise one keyed HMAC per hashing key, copied for each digest (a CreateTotp
        # makes ten): the key is padded and hashed into it once, not on every digest.
        self._macs = {
            key_id: hmac.new(key, digestmod="sha256") for key_id, key in hashing.keys.items()
        }

    @classmethod
    def generate(cls) -> Keyring:
        return cls(
            _KeySet("k1", {"k1": secrets.token_bytes(KEY_BYTES)}),
            _KeySet("h1", {"h1": secrets.token_bytes(KEY_BYTES)}),
        )

    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise KeyringError(f"cannot read keys file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise KeyringError("keys file: top level must be an object")
        return cls(
            _KeySet.parse("encryption", data.get("encryption")),
            _KeySet.parse("hashing", data.get("hashing")),
        )

    def write_new(self, path: Path) -> None:
        """Write to a file that must not exist yet, readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(
                {"encryption": self._encryption.to_json(), "hashing": self._hashing.to_json()},
                f,
                indent=2,
            )

    # -- encryption --------------------------------------------------------------------

    def seal(self, plaintext: bytes, purpose: str, *bound_to: str) -> SealedSecret:
        """Encrypt under the primary key, bound to ``purpose`` and ``bound_to`` (user, id)."""
        key_id = self._encryption.primary
        nonce = secrets.token_bytes(NONCE_BYTES)
        aad = _associated_data(purpose, *bound_to)
        ciphertext = self._ciphers[key_id].encrypt(nonce, plaintext, aad)
        return SealedSecret(key_id, nonce + ciphertext)

    @property
    def encryption_key_id(self) -> str:
        """The primary encryption key's id: the one new writes are sealed under."""
        return self._encryption.primary

    def reseal(self, sealed: SealedSecret, purpose: str, *bound_to: str) -> SealedSecret | None:
        """``sealed`` re-encrypted under the primary key (same purpose and binding), or
        None if it already is under the primary key (key rotation)."""
        if sealed.key_id == self._encryption.primary:
            return None
        return self.seal(self.open(sealed, purpose, *bound_to), purpose, *bound_to)

    def open(self, sealed: SealedSecret, purpose: str, *bound_to: str) -> bytes:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise DecryptionError(f"unknown encryption key id {sealed.key_id!r}")
        if len(sealed.blob) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionError("sealed value is truncated")
        nonce, ciphertext = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, ciphertext, _associated_data(purpose, *bound_to))
        except InvalidTag as exc:
            raise DecryptionError("sealed value does not open") from exc

    # -- keyed hashes ------------------------------------------------------------------

    @property
    def hashing_key_id(self) -> str:
        return self._hashing.primary

    def digest(self, value: str, user_id: str, key_id: str | None = None) -> bytes:
        """HMAC-SHA256 of ``value`` for ``user_id``, under the primary or a named key.

        The user id is mixed in so equal codes of two users never share a digest.
        """
        mac = self._macs[key_id or self._hashing.primary].copy()
        mac.update(_associated_data("recovery", user_id, value))
        return mac.digest()

    def digests(self, value: str, user_id: str) -> dict[str, bytes]:
        """The digest under every known hashing key, for records hashed before a rotation."""
        return {key_id: self.digest(value, user_id, key_id) for key_id in self._hashing.keys}
