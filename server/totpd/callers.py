"""Who may call totpd and which RPCs each caller may call: the callers file.

``TOTPD_CALLERS_FILE`` is TOML, one table per calling service::

    # The table's name is the caller's name (audit events of token callers carry it).
    [callers.web-backend]
    # mTLS: client certificates with one of these SANs (DNS name or SPIFFE URI) are this
    # caller. Needs TOTPD_TLS_CLIENT_CA_FILE.
    tls_identities = ["spiffe://example.com/ns/prod/sa/web-backend"]
    # Bearer tokens (for meshes that terminate TLS before totpd): the SHA-256, in hex,
    # of each token this caller may send as `authorization: Bearer <token>`.
    # `python -m totpd hash-token < token.txt` prints it. Never the token itself.
    token_sha256 = ["3f0a...64 hex digits..."]
    # The RPCs it may call, by their names in totp_service.proto.
    rpcs = ["CreateTotp", "ActivateTotp", "VerifyTotp", "UseRecoveryCode", "GetTotp"]

    [callers.admin-tool]
    tls_identities = ["spiffe://example.com/ns/ops/sa/totp-admin"]
    rpcs = ["GetTotp", "DeleteTotp", "RegenerateRecoveryCodes"]

Tokens are compared as SHA-256 digests in constant time. A plain (unsalted, fast) hash is
right for them because they are long random strings, not passwords: make each one at
least 32 random bytes (``python -c "import secrets; print(secrets.token_urlsafe(32))"``).

This module knows nothing of gRPC: the API layer asks it who a credential belongs to.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_FIELDS = {"tls_identities", "token_sha256", "rpcs"}


class CallersError(Exception):
    """The callers file is missing, unreadable or malformed (a startup error)."""


def hash_token(token: str) -> str:
    """The value to put in ``token_sha256`` for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_token_main() -> int:
    """``totpd hash-token``: read a token on stdin, print its ``token_sha256`` entry."""
    import sys

    token = sys.stdin.readline().strip()
    if len(token) < 32:
        print(
            "totpd hash-token: expected a token of at least 32 characters on stdin", file=sys.stderr
        )
        return 2
    print(hash_token(token))
    return 0


@dataclass(frozen=True)
class Caller:
    """One calling service: its name and the RPCs it may call."""

    name: str
    rpcs: frozenset[str]

    def may_call(self, rpc: str) -> bool:
        return rpc in self.rpcs


@dataclass(frozen=True)
class Identified:
    """A caller, and the identity to record for it in audit events."""

    caller: Caller
    identity: str


class Callers:
    def __init__(
        self, by_identity: Mapping[str, Caller], by_token_digest: Mapping[bytes, Caller]
    ) -> None:
        self._by_identity = dict(by_identity)
        self._by_token_digest = list(by_token_digest.items())

    @property
    def names(self) -> list[str]:
        found = {c.name for c in self._by_identity.values()}
        found |= {c.name for _, c in self._by_token_digest}
        return sorted(found)

    @property
    def uses_tls(self) -> bool:
        return bool(self._by_identity)

    @property
    def uses_tokens(self) -> bool:
        return bool(self._by_token_digest)

    @classmethod
    def load(cls, path: Path, known_rpcs: Collection[str]) -> Callers:
        try:
            text = path.read_text()
        except OSError as exc:
            raise CallersError(f"cannot read callers file {path}: {exc}") from exc
        return cls.parse(text, known_rpcs, source=str(path))

    @classmethod
    def parse(cls, text: str, known_rpcs: Collection[str], source: str = "callers file") -> Callers:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CallersError(f"{source}: not valid TOML: {exc}") from exc
        unknown = set(data) - {"callers"}
        if unknown:
            raise CallersError(f"{source}: unknown top-level keys {sorted(unknown)}")
        tables = data.get("callers")
        if not isinstance(tables, dict) or not tables:
            raise CallersError(f"{source}: needs at least one [callers.<name>] table")
        by_identity: dict[str, Caller] = {}
        by_digest: dict[bytes, Caller] = {}
        for name, table in tables.items():
            where = f"{source}: callers.{name}"
            if not _NAME.match(name):
                raise CallersError(f"{where}: names are 1-64 of A-Z a-z 0-9 . _ -")
            if not isinstance(table, dict):
                raise CallersError(f"{where} must be a table")
            extra = set(table) - _FIELDS
            if extra:
                raise CallersError(f"{where}: unknown keys {sorted(extra)}")
            rpcs = _strings(table, "rpcs", where)
            bad = sorted(set(rpcs) - set(known_rpcs))
            if bad:
                raise CallersError(f"{where}: unknown RPCs {bad} (known: {sorted(known_rpcs)})")
            if not rpcs:
                raise CallersError(f"{where}: 'rpcs' lists no RPC")
            caller = Caller(name, frozenset(rpcs))
            identities = _strings(table, "tls_identities", where)
            digests = _strings(table, "token_sha256", where)
            if not identities and not digests:
                raise CallersError(f"{where}: needs 'tls_identities' or 'token_sha256'")
            for identity in identities:
                if not identity or not identity.isprintable():
                    raise CallersError(f"{where}: empty or unprintable TLS identity")
                if identity in by_identity:
                    raise CallersError(f"{where}: TLS identity {identity!r} is listed twice")
                by_identity[identity] = caller
            for digest in digests:
                if not _SHA256_HEX.match(digest):
                    raise CallersError(
                        f"{where}: token_sha256 entries are 64 lowercase hex digits "
                        "(the SHA-256 of the token, never the token)"
                    )
                raw = bytes.fromhex(digest)
                if raw in by_digest:
                    raise CallersError(f"{where}: a token hash is listed twice")
                by_digest[raw] = caller
        return cls(by_identity, by_digest)

    def by_token(self, token: str) -> Identified | None:
        """The caller a bearer token belongs to; every stored hash is compared, each in
        constant time, so timing says nothing about which one (nearly) matched."""
        digest = hashlib.sha256(token.encode()).digest()
        found: Caller | None = None
        for stored, caller in self._by_token_digest:
            if hmac.compare_digest(stored, digest):
                found = caller
        return Identified(found, found.name) if found else None

    def by_tls_identities(self, sans: Iterable[str]) -> Identified | None:
        """The caller a verified client certificate's SANs name; None if they name no
        caller, or more than one (an ambiguous certificate identifies nobody)."""
        matches = {(self._by_identity[san], san) for san in sans if san in self._by_identity}
        if len({caller for caller, _ in matches}) != 1:
            return None
        caller, san = min(matches, key=lambda m: m[1])
        return Identified(caller, san)


def _strings(table: Mapping[str, object], key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CallersError(f"{where}: '{key}' must be a list of strings")
    return list(value)
