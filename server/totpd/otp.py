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
    matched: int | None = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(_hotp(secret, params, step), offered):
            matched = step
    return matched


def _hotp(secret: bytes, params: TotpParams, counter: int) -> bytes:
    """RFC 4226 section 5.3 (HMAC, dynamic truncation, modulo 10^digits), as ASCII bytes.

    The same codes as pyotp's, at a sixth of the cost: pyotp base32-decodes the secret and
    builds an HMAC object for every code, and a check computes 2 x window + 1 of them."""
    mac = hmac.digest(secret, counter.to_bytes(8, "big"), _DIGESTS[params.algorithm])
    offset = mac[-1] & 0x0F
    binary = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return b"%0*d" % (params.digits, binary % 10**params.digits)


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
