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


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + GROUP_LENGTH] for i in range(0, CODE_LENGTH, GROUP_LENGTH))


def new_codes(count: int = COUNT) -> tuple[str, ...]:
    codes: set[str] = set()
    while len(codes) < count:  # a repeat is astronomically unlikely, but would cost a code
        codes.add(new_code())
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
