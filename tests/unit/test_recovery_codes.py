"""Recovery codes: their shape and the normalisation that decides what counts as one."""

from __future__ import annotations

import re

import pytest

from totpd import recovery_codes

CODE_SHAPE = re.compile(r"[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}\Z")


def test_new_codes_are_ten_unique_codes_of_the_documented_shape() -> None:
    codes = recovery_codes.new_codes()
    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert CODE_SHAPE.match(code), code


def test_new_codes_differ_between_calls() -> None:
    assert set(recovery_codes.new_codes()).isdisjoint(recovery_codes.new_codes())


def test_new_codes_honours_count() -> None:
    assert len(set(recovery_codes.new_codes(3))) == 3


def test_new_codes_draw_every_character_equally_often() -> None:
    # 36 symbols from random bytes: bytes >= 252 must be skipped, or the first four symbols
    # would come up 8/256 of the time instead of 1/36. Over 240,000 characters a fair
    # symbol is seen 6667 times (standard deviation 80), a favoured one 7500: the bounds
    # sit 5.4 deviations from the fair count, so this fails on bias, not on bad luck.
    counts: dict[str, int] = {}
    for c in "".join(recovery_codes.new_codes(20_000)).replace("-", ""):
        counts[c] = counts.get(c, 0) + 1
    assert len(counts) == 36
    assert max(counts.values()) < 7100, counts
    assert min(counts.values()) > 6233, counts


def test_skipped_bytes_are_made_up_by_another_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # One read serves all ten codes; if too many of its bytes are skipped (>= 252), the
    # rest comes from another read, and a skipped byte never becomes a character.
    reads: list[int] = []

    def token_bytes(n: int) -> bytes:
        reads.append(n)
        return bytes([255] * (n - 4) + [0, 1, 36, 37]) if len(reads) == 1 else bytes(n)

    monkeypatch.setattr(recovery_codes.secrets, "token_bytes", token_bytes)
    assert recovery_codes.new_code() == "abab-aaaa-aaaa"
    assert len(reads) == 2 and reads[1] >= 8


def test_ten_codes_take_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    real = recovery_codes.secrets.token_bytes
    reads: list[int] = []

    def token_bytes(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(recovery_codes.secrets, "token_bytes", token_bytes)
    codes = recovery_codes.new_codes(10)
    assert len(set(codes)) == 10
    # 120 characters need 120 usable bytes; the spare ones make a second read rare
    # (less than 1 in 10^6 here).
    assert reads == [120 + 120 // 16 + 8]


def test_new_codes_use_the_whole_alphabet() -> None:
    # 100 codes hold 1200 characters; each of the 36 symbols should turn up.
    seen = set("".join(recovery_codes.new_codes(100)).replace("-", ""))
    assert seen == set("abcdefghijklmnopqrstuvwxyz0123456789")


def test_normalize_of_a_new_code_is_it_without_dashes() -> None:
    for code in recovery_codes.new_codes():
        assert recovery_codes.normalize(code) == code.replace("-", "")


@pytest.mark.parametrize(
    "variant",
    [
        "ckss-2skx-eb0w",
        "CKSS-2SKX-EB0W",
        "Ckss-2sKx-eB0w",
        "ckss2skxeb0w",
        "CKSS2SKXEB0W",
        "ckss 2skx eb0w",
        " ckss-2skx-eb0w ",
        "ckss\t2skx\teb0w",
        "c-k-s-s-2-s-k-x-e-b-0-w",
        "--ckss--2skx--eb0w--",
    ],
)
def test_normalize_accepts_case_dash_and_space_variants(variant: str) -> None:
    assert recovery_codes.normalize(variant) == "ckss2skxeb0w"


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "-",
        "   ",
        "ckss-2skx-eb0",  # 11 characters
        "ckss-2skx-eb0wx",  # 13 characters
        "ckss-2skx-eb0w-ckss",
        "ckss_2skx_eb0w",  # other separator
        "ckss.2skx.eb0w",
        "ckss-2skx-eb0!",
        "ckss-2skx-eb0ü",  # non-ASCII letter
        "ckss-2skx-١٢٣٤",  # Arabic-Indic digits
        "ckss-2skx-１２３４",  # full-width digits
        "ckss-2skx-𝟏𝟐𝟑𝟒",  # mathematical bold digits
        "ckss\n2skx\neb0w",  # newlines are not ignored
        "ckss\u00a02skx\u00a0eb0w",  # no-break space is not a space here
        "ckss-2skx-eb0w\x00",
    ],
)
def test_normalize_rejects_anything_else(garbage: str) -> None:
    assert recovery_codes.normalize(garbage) is None
