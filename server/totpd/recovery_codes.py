"""One-time recovery codes (NIST SP 800-63B look-up secrets): making and normalising them.

A code is three groups of four characters from ``[a-z0-9]`` (``ckss-2skx-ebow``): 12 random
characters carry 62 bits, far above the 20 that 800-63B asks of a rate-limited look-up
secret, and the dashes make them easy to read out.
"""

from __future__ import annotations

import secrets
import string

ALPHABET = string.ascii_lowercase + string.digits
GROUPS = 3
GROUP_LENGTH = 4
COUNT = 10
CODE_LENGTH = GROUPS * GROUP_LENGTH
_IGNORED = str.maketrans("", "", "- \t")


# Bytes below this are used (b % 36), the rest skipped: every character equally likely.
_UNBIASED_BELOW = 256 - 256 % len(ALPHABET)


def _characters(count: int) -> str:
    """``count`` characters of ALPHABET, each equally likely, from one read of the OS's
    CSPRNG (rarely two): a read per character (``secrets.choice``), or even per code, was
    a large share of a CreateTotp's CPU."""
    out = ""
    while len(out) < count:
        missing = count - len(out)
        # 252 of 256 byte values are used: a few spare bytes make a second read rare.
        raw = secrets.token_bytes(missing + missing // 16 + 8)
        out += "".join(ALPHABET[b % len(ALPHABET)] for b in raw if b < _UNBIASED_BELOW)
    return out[:count]


def _grouped(raw: str) -> str:
    return "-".join(raw[i : i + GROUP_LENGTH] for i in range(0, CODE_LENGTH, GROUP_LENGTH))


def new_code() -> str:
    return _grouped(_characters(CODE_LENGTH))


def new_codes(count: int = COUNT) -> tuple[str, ...]:
    codes: set[str] = set()
    while len(codes) < count:  # a repeat is astronomically unlikely, but would cost a code
        raw = _characters(CODE_LENGTH * (count - len(codes)))
        codes.update(_grouped(raw[i : i + CODE_LENGTH]) for i in range(0, len(raw), CODE_LENGTH))
    return tuple(sorted(codes))


def normalize(code: str) -> str | None:
    """The canonical form used for hashing: lower case, no dashes or spaces.

    None for anything that cannot be a recovery code, so garbage is refused without
    ever being hashed or looked up.
    """
    canonical = code.translate(_IGNORED)
    # ASCII first: str.lower() folds some non-ASCII letters into ASCII (KELVIN SIGN -> k).
    canonical = canonical.lower() if canonical.isascii() else ""
    if len(canonical) != CODE_LENGTH or not all(c in ALPHABET for c in canonical):
        return None
    return canonical
