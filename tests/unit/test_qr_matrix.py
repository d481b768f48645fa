"""qr_matrix against its oracle, the ``qrcode`` package: the same codewords for every version
and level, and the same matrix, module for module, for a fixed-seed set of otpauth URIs and
for texts that just fill a version or just overflow it (~13 s, nearly all of it in qrcode)."""

from __future__ import annotations

import random

import pytest
import qrcode
from qrcode import util
from qrcode.constants import ERROR_CORRECT_H, ERROR_CORRECT_L, ERROR_CORRECT_M, ERROR_CORRECT_Q

from totpd import otp, qr, qr_matrix
from totpd.model import Algorithm, TotpParams

LEVELS = {"L": ERROR_CORRECT_L, "M": ERROR_CORRECT_M, "Q": ERROR_CORRECT_Q, "H": ERROR_CORRECT_H}


def _oracle(text: str) -> list[str]:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=0, box_size=1)
    code.add_data(text)
    code.make(fit=True)
    return ["".join("1" if dark else "0" for dark in row) for row in code.get_matrix()]


# -- Codewords: segments, padding, Reed-Solomon, interleaving ---------------------------


def _bits(segment: util.QRData, version: int) -> int:
    """The bits of one segment (mode, count, data) in ``version``, by qrcode's own writer."""
    buffer = util.BitBuffer()
    buffer.put(segment.mode, 4)
    buffer.put(len(segment), util.length_in_bits(segment.mode, version))
    segment.write(buffer)
    return len(buffer)


def _segments_filling(version: int, level: int, rng: random.Random) -> list[util.QRData]:
    """A numeric, an alphanumeric and a byte segment that together fill most of the
    version (the byte segment takes what is left, so every block is mostly data)."""
    most = 8 if version > 1 else 2
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, most)))
    letters = "".join(rng.choice(util.ALPHA_NUM.decode()) for _ in range(rng.randrange(0, most)))
    segs = [
        util.QRData(digits.encode(), util.MODE_NUMBER, check_data=False),
        util.QRData(letters.encode(), util.MODE_ALPHA_NUM, check_data=False),
    ]
    used = sum(_bits(s, version) for s in segs)
    header = _bits(util.QRData(b"", util.MODE_8BIT_BYTE, check_data=False), version)
    room = (util.BIT_LIMIT_TABLE[level][version] - used - header) // 8
    raw = rng.randbytes(rng.randrange(max(0, room - 3), room + 1))
    return [*segs, util.QRData(raw, util.MODE_8BIT_BYTE, check_data=False)]


@pytest.mark.parametrize("level", LEVELS.values(), ids=LEVELS.keys())
def test_codewords_are_qrcodes_for_every_version(level: int) -> None:
    rng = random.Random(18004 + level)
    for version in range(1, 41):
        segs = _segments_filling(version, level, rng)
        expected = util.create_data(version, level, segs)
        got = qr_matrix.codewords([(s.mode, s.data) for s in segs], version, level)
        assert list(got) == expected, f"version {version}"


# -- Matrices ---------------------------------------------------------------------------

# Characters for account names and issuers, with weights: mostly what users type, also
# what percent-encoding turns into long alphanumeric runs (%E6%97%A5...), and digit runs
# long enough for a numeric segment.
ALPHABETS = {
    "abcdefghijklmnopqrstuvwxyz": 8,
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789": 3,
    "0123456789": 2,
    " .-_+@%:/?&=#~!": 3,
    "éüßçøñÅÆ": 1,
    "日本語中文한국어": 1,
    "абвгдежз": 1,
    "🙂🔐✓": 1,
}


def _name(rng: random.Random, longest: int) -> str:
    # Mostly short, as names are, but up to ``longest``; runs from one alphabet at a time.
    length = (
        rng.randrange(1, longest // 4 + 1) if rng.random() < 0.7 else rng.randrange(1, longest + 1)
    )
    out: list[str] = []
    while len(out) < length:
        (alphabet,) = rng.choices(list(ALPHABETS), weights=list(ALPHABETS.values()))
        out.extend(rng.choice(alphabet) for _ in range(rng.randrange(1, 25)))
    return "".join(out[:length])


def _otpauth_uris(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        otp.otpauth_uri(
            rng.randbytes(rng.choice((20, 20, 32, 64))),
            TotpParams(rng.choice(list(Algorithm)), rng.choice((6, 8)), rng.choice((30, 60))),
            _name(rng, 64),
            _name(rng, 200),
        )
        for _ in range(count)
    ]


def _longest(char: str, mode: int, version: int) -> int:
    """The most ``char`` that fit ``version`` at level M as one segment of ``mode``."""
    limit = util.BIT_LIMIT_TABLE[ERROR_CORRECT_M][version]
    low, high = 0, 8 * limit  # fits, does not
    while high - low > 1:
        count = (low + high) // 2
        segment = util.QRData((char * count).encode(), mode, check_data=False)  # type: ignore[arg-type]
        low, high = (count, high) if _bits(segment, version) <= limit else (low, count)
    return low


def _boundary_texts() -> dict[str, str]:
    """For each mode, the longest text of one character that fits a version, and one
    character more: the terminator cut short and no padding at all, at each length, and
    the next version. Versions 9-10 and 26-27 also differ in the count field's width."""
    modes = (("byte", "a", util.MODE_8BIT_BYTE), ("alphanumeric", "A", util.MODE_ALPHA_NUM))
    modes += (("numeric", "7", util.MODE_NUMBER),)
    texts = {}
    for version in (1, 2, 3, 4, 5, 6, 7, 9, 10, 13, 26, 27):
        for name, char, mode in modes:
            count = _longest(char, mode, version)
            texts[f"fills-v{version}-{name}"] = char * count
            texts[f"overflows-v{version}-{name}"] = char * (count + 1)
    return texts


# Texts that are not otpauth URIs: the empty text, short ones (qrcode segments text of up
# to 20 bytes by other rules), digit and alphanumeric runs around the 20 of a segment.
OTHER_TEXTS = [
    "",
    "a",
    "12345",
    "HELLO WORLD",
    "hello, world",
    "日本語テキスト",
    "0" * 19 + "x" * 5,
    "x" * 5 + "0" * 20 + "x" * 5,
    "ABC" + "1" * 25 + "DEF" + "A" * 19,
    "otpauth://totp/X:" + "9" * 40 + "?secret=" + "A" * 52,
    "A" * 20 + "a" + "B" * 21,
]

URIS = _otpauth_uris(300, seed=6238)
BOUNDARIES = _boundary_texts()
CASES = {f"uri{i}": uri for i, uri in enumerate(URIS)}
CASES |= BOUNDARIES
CASES |= {f"other{i}": text for i, text in enumerate(OTHER_TEXTS)}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_matrix_is_qrcodes(text: str) -> None:
    expected = _oracle(text)
    got = qr_matrix.encode(text).rows()
    assert len(got) == len(expected), "another version"
    assert got == expected


def _mask(rows: list[str]) -> int:
    """The mask a matrix names in its format information (the copy down column 8)."""
    n = len(rows)
    cells = [(i, 8) for i in range(6)] + [(7, 8), (8, 8)] + [(n - 7 + i, 8) for i in range(7)]
    word = sum(int(rows[r][c]) << i for i, (r, c) in enumerate(cells))
    return next(k for k in range(8) if util.BCH_type_info(ERROR_CORRECT_M << 3 | k) == word)


def test_the_cases_cover_segment_modes_versions_and_masks() -> None:
    """The property test tests what it says: otpauth URIs with numeric, alphanumeric and
    byte segments, in a spread of versions; texts on both sides of version boundaries;
    every mask picked."""
    modes = {mode for uri in URIS for mode, _ in qr_matrix.segments(uri)}
    assert modes == {util.MODE_NUMBER, util.MODE_ALPHA_NUM, util.MODE_8BIT_BYTE}
    versions = {qr_matrix.fit(qr_matrix.segments(uri)) for uri in URIS}
    assert len(versions) >= 10
    for name, text in BOUNDARIES.items():
        fits, version = name.split("-")[:2]
        found = qr_matrix.fit(qr_matrix.segments(text))
        assert found == int(version[1:]) if fits == "fills" else found > int(version[1:]), name
    masks = {_mask(qr_matrix.encode(text).rows()) for text in CASES.values()}
    assert masks == set(range(8))


def test_segments_are_qrcodes() -> None:
    for text in CASES.values():
        expected = [(s.mode, s.data) for s in util.optimal_data_chunks(text, minimum=20)]
        assert qr_matrix.segments(text) == expected, text


def test_text_too_long_for_any_version() -> None:
    qr_matrix.encode("a" * 2331)  # version 40 at level M holds 2331 bytes
    with pytest.raises(ValueError, match="more than a QR code holds"):
        qr_matrix.encode("a" * 2332)


def test_prepared_versions_are_not_worked_out_again_at_their_first_code() -> None:
    # A server prepares the usual versions before it takes calls (qr.prepare_usual_versions):
    # encoding then finds every table made, for each of those versions.
    for cached in (qr_matrix._layout, qr_matrix._blocks, qr_matrix._ec_table):
        cached.cache_clear()
    qr.prepare_usual_versions()
    made = {f: f.cache_info().misses for f in (qr_matrix._layout, qr_matrix._ec_table)}
    versions = set()
    for length in range(1, 199, 7):  # up to the 213 bytes version 10 holds in byte mode
        text = "otpauth://totp/" + "x" * length
        versions.add(qr_matrix.fit(qr_matrix.segments(text)))
        qr_matrix.encode(text)
    assert versions <= set(qr.USUAL_VERSIONS) and len(versions) >= 8, versions
    assert {f: f.cache_info().misses for f in made} == made
