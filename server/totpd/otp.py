"""TOTP arithmetic (RFC 6238 over RFC 4226) and the otpauth Key URI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from urllib.parse import quote, urlencode

import pyotp

from .model import Algorithm, TotpParams

SECRET_BYTES = 20  # 160 bits: RFC 4226 section 4 recommends it, NIST 800-63B asks >= 112.

_DIGESTS: dict[Algorithm, Callable[..., hashlib._Hash]] = {
    Algorithm.SHA1: hashlib.sha1,
    Algorithm.SHA256: hashlib.sha256,
    Algorithm.SHA512: hashlib.sha512,
}


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def encode_secret(secret: bytes) -> str:
    """Base32 without padding, as authenticator apps expect it (32 chars for 20 bytes)."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def time_step(now: float, period: int) -> int:
    return int(now // period)


def code_at(secret: bytes, params: TotpParams, step: int) -> str:
    """The code of ``step``, computed by pyotp: the reference that ``_hotp`` is tested
    against (tests/unit/test_otp.py), for tools and tests."""
    otp = pyotp.TOTP(
        encode_secret(secret),
        digits=params.digits,
        digest=_DIGESTS[params.algorithm],
        interval=params.period,
    )
    return otp.generate_otp(step)


def match_step(secret: bytes, params: TotpParams, code: str, now: float, window: int) -> int | None:
    """The time step within ``window`` steps of ``now`` whose code is ``code``, or None.

    Every candidate is computed and compared in constant time, so the answer's timing does
    not tell which step (if any) matched. If two steps share a code (a 1-in-10^6 chance)
    the newest wins, which only makes replay protection stricter.
    """
    current = time_step(now, params.period)
    offered = code.encode()  # bytes: compare_digest refuses non-ASCII str
    hotp = _Hotp(secret, params)
    matched: int | None = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(hotp.code(step), offered):
            matched = step
    return matched


def _hotp(secret: bytes, params: TotpParams, counter: int) -> bytes:
    """The code of one counter (``_Hotp`` for several of one secret)."""
    return _Hotp(secret, params).code(counter)


# RFC 2104's inner and outer pads, as byte translation tables (as the stdlib hmac builds).
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class _Hotp:
    """RFC 4226 section 5.3 (HMAC, dynamic truncation, modulo 10^digits) for the counters
    of one secret, as ASCII bytes: the same codes as pyotp's, at a tenth of the cost.

    A check computes 2 x window + 1 codes of one secret. HMAC(K, m) is H((K ^ opad) ||
    H((K ^ ipad) || m)) (RFC 2104), so both padded keys are hashed once here and each code
    only continues copies of those two states; ``hmac.digest`` would set up the key and
    look up the hash again for every code, pyotp also base32-decodes the secret each time.
    """

    __slots__ = ("_inner", "_outer", "_digits", "_modulus")

    def __init__(self, secret: bytes, params: TotpParams) -> None:
        new = _DIGESTS[params.algorithm]
        self._inner, self._outer = new(), new()
        block = self._inner.block_size
        key = new(secret).digest() if len(secret) > block else secret  # RFC 2104 section 2
        key = key.ljust(block, b"\0")
        self._inner.update(key.translate(_IPAD))
        self._outer.update(key.translate(_OPAD))
        self._digits = params.digits
        self._modulus = 10**params.digits

    def code(self, counter: int) -> bytes:
        inner = self._inner.copy()
        inner.update(counter.to_bytes(8, "big"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        mac = outer.digest()
        offset = mac[-1] & 0x0F
        binary = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
        return b"%0*d" % (self._digits, binary % self._modulus)


def otpauth_uri(secret: bytes, params: TotpParams, issuer: str, account_name: str) -> str:
    """The Key URI (github.com/google/google-authenticator/wiki/Key-Uri-Format).

    The label is ``issuer:account`` with both parts percent-encoded; the issuer is repeated
    as a parameter, as the format recommends. Non-default parameters are spelled out (apps
    that ignore them then fail visibly rather than showing wrong codes silently).
    """
    label = f"{quote(issuer, safe='')}:{quote(account_name, safe='')}"
    query: dict[str, str | int] = {"secret": encode_secret(secret), "issuer": issuer}
    if params.algorithm is not Algorithm.SHA1:
        query["algorithm"] = params.algorithm.value
    if params.digits != 6:
        query["digits"] = params.digits
    if params.period != 30:
        query["period"] = params.period
    return f"otpauth://totp/{label}?{urlencode(query, quote_via=quote)}"
