"""TOTP arithmetic against RFC 6238's own test vectors, the window logic, and the Key URI."""

from __future__ import annotations

import base64
import hmac
import re
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from tests.conftest import T0
from tests.helpers import totp_code
from totpd import otp
from totpd.model import Algorithm, TotpParams

# RFC 6238 Appendix B: the seed is ASCII "1234567890" repeated to the hash's block length.
SEEDS = {
    Algorithm.SHA1: b"12345678901234567890",
    Algorithm.SHA256: b"12345678901234567890123456789012",
    Algorithm.SHA512: b"1234567890" * 6 + b"1234",
}

# (time, SHA1, SHA256, SHA512), 8 digits, 30 s steps: the table of Appendix B.
RFC6238_VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


def _vectors() -> list[tuple[Algorithm, int, str]]:
    out = []
    for time, *codes in RFC6238_VECTORS:
        for algorithm, code in zip(
            (Algorithm.SHA1, Algorithm.SHA256, Algorithm.SHA512), codes, strict=True
        ):
            out.append((algorithm, time, code))
    return out


def _reference_hotp(key: bytes, params: TotpParams, counter: int) -> bytes:
    """RFC 4226 section 5.3 on the stdlib's HMAC, which handles keys of any length."""
    name = {Algorithm.SHA1: "sha1", Algorithm.SHA256: "sha256", Algorithm.SHA512: "sha512"}
    mac = hmac.digest(key, counter.to_bytes(8, "big"), name[params.algorithm])
    offset = mac[-1] & 0x0F
    binary = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(binary % 10**params.digits).zfill(params.digits).encode()


@pytest.mark.parametrize("algorithm", list(Algorithm))
@pytest.mark.parametrize("key_bytes", [1, 20, 63, 64, 65, 127, 128, 129, 300])
def test_hotp_is_the_stdlib_hmacs_for_keys_shorter_and_longer_than_a_block(
    algorithm: Algorithm, key_bytes: int
) -> None:
    # Keys around the hash's block size (64 bytes, 128 for SHA-512): padded below it,
    # hashed first above it (RFC 2104 section 2). totpd's own secrets are 20 bytes.
    params = TotpParams(algorithm=algorithm, digits=8)
    key = bytes(range(256))[:key_bytes] if key_bytes <= 256 else b"k" * key_bytes
    for counter in (0, 1, 2**32 + 7, 2**63):
        assert otp._hotp(key, params, counter) == _reference_hotp(key, params, counter)


@pytest.mark.parametrize(("algorithm", "time", "expected"), _vectors())
def test_rfc6238_appendix_b_vectors(algorithm: Algorithm, time: int, expected: str) -> None:
    params = TotpParams(algorithm=algorithm, digits=8, period=30)
    step = otp.time_step(time, params.period)
    assert otp.code_at(SEEDS[algorithm], params, step) == expected


@pytest.mark.parametrize(("algorithm", "time", "expected"), _vectors())
def test_match_step_finds_the_rfc6238_vectors(
    algorithm: Algorithm, time: int, expected: str
) -> None:
    # match_step computes codes itself (otp._hotp), not through pyotp: the same vectors.
    params = TotpParams(algorithm=algorithm, digits=8, period=30)
    step = otp.time_step(time, params.period)
    assert otp.match_step(SEEDS[algorithm], params, expected, time, window=0) == step


@pytest.mark.parametrize("algorithm", list(Algorithm))
@pytest.mark.parametrize("digits", [6, 7, 8])
def test_match_steps_codes_are_pyotps_codes(algorithm: Algorithm, digits: int) -> None:
    # The fast path against the reference implementation, over many secrets and steps
    # (leading zeros and every truncation offset come up).
    params = TotpParams(algorithm=algorithm, digits=digits, period=30)
    for i in range(300):
        secret = otp.new_secret()
        step = 1_000_000 + i * 7919
        code = otp.code_at(secret, params, step)
        assert otp._hotp(secret, params, step) == code.encode()
        assert otp.match_step(secret, params, code, step * 30 + 15, window=0) == step


@pytest.mark.parametrize(("algorithm", "time", "expected"), _vectors())
def test_six_digit_code_is_the_rfc_value_modulo_a_million(
    algorithm: Algorithm, time: int, expected: str
) -> None:
    # Dynamic truncation mod 10^6 keeps the last six digits of the mod 10^8 value.
    params = TotpParams(algorithm=algorithm, digits=6, period=30)
    assert otp.code_at(SEEDS[algorithm], params, otp.time_step(time, 30)) == expected[-6:]


@pytest.mark.parametrize(
    ("now", "period", "step"),
    [
        (0, 30, 0),
        (29.999, 30, 0),
        (30, 30, 1),
        (59, 30, 1),
        (1111111109, 30, 0x23523EC),
        (1111111111, 30, 0x23523ED),
        (20000000000, 30, 0x27BC86AA),
        (119.5, 60, 1),
        (120, 60, 2),
    ],
)
def test_time_step(now: float, period: int, step: int) -> None:
    assert otp.time_step(now, period) == step


def test_code_is_zero_padded_to_its_digits() -> None:
    # 1111111109 with SHA1 yields 07081804: the leading zero must survive.
    params = TotpParams(Algorithm.SHA1, 8, 30)
    code = otp.code_at(SEEDS[Algorithm.SHA1], params, otp.time_step(1111111109, 30))
    assert code == "07081804"
    assert len(code) == 8


# -- match_step ------------------------------------------------------------------------

SECRET = bytes(range(20))
PARAMS = TotpParams()
STEP0 = otp.time_step(T0, 30)


def _code(offset_seconds: float, params: TotpParams = PARAMS) -> str:
    return otp.code_at(SECRET, params, otp.time_step(T0 + offset_seconds, params.period))


def test_code_at_agrees_with_an_authenticator_app() -> None:
    encoded = otp.encode_secret(SECRET)
    assert otp.code_at(SECRET, PARAMS, STEP0) == totp_code(encoded, T0)
    params = TotpParams(Algorithm.SHA512, 8, 60)
    assert otp.code_at(SECRET, params, otp.time_step(T0, 60)) == totp_code(
        encoded, T0, digits=8, period=60, algorithm="SHA512"
    )


def test_match_step_window_zero_accepts_only_the_current_step() -> None:
    assert otp.match_step(SECRET, PARAMS, _code(0), T0, window=0) == STEP0
    assert otp.match_step(SECRET, PARAMS, _code(-30), T0, window=0) is None
    assert otp.match_step(SECRET, PARAMS, _code(30), T0, window=0) is None


@pytest.mark.parametrize(("offset", "step_offset"), [(-30, -1), (0, 0), (30, 1)])
def test_match_step_window_one_accepts_neighbours(offset: int, step_offset: int) -> None:
    assert otp.match_step(SECRET, PARAMS, _code(offset), T0, window=1) == STEP0 + step_offset


@pytest.mark.parametrize("offset", [-60, 60, -90, 90])
def test_match_step_window_one_rejects_two_steps_away(offset: int) -> None:
    assert otp.match_step(SECRET, PARAMS, _code(offset), T0, window=1) is None


@pytest.mark.parametrize(("offset", "step_offset"), [(-60, -2), (60, 2)])
def test_match_step_window_two_reaches_two_steps(offset: int, step_offset: int) -> None:
    assert otp.match_step(SECRET, PARAMS, _code(offset), T0, window=2) == STEP0 + step_offset
    assert otp.match_step(SECRET, PARAMS, _code(offset * 3 // 2), T0, window=2) is None


def test_match_step_uses_the_period_of_the_params() -> None:
    params = TotpParams(period=60)
    step = otp.time_step(T0, 60)
    code = _code(-60, params)
    assert otp.match_step(SECRET, params, code, T0, window=1) == step - 1
    assert otp.match_step(SECRET, params, _code(-120, params), T0, window=1) is None


def test_match_step_rejects_wrong_codes() -> None:
    right = _code(0)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    assert otp.match_step(SECRET, PARAMS, wrong, T0, window=1) is None
    assert otp.match_step(SECRET, PARAMS, "", T0, window=1) is None
    # The right digits in the wrong length: an 8-digit code of a 6-digit TOTP.
    eight = otp.code_at(SECRET, TotpParams(digits=8), STEP0)
    assert otp.match_step(SECRET, PARAMS, eight, T0, window=1) is None
    # Another secret's code.
    other = otp.code_at(bytes(20), PARAMS, STEP0)
    if other != right:
        assert otp.match_step(SECRET, PARAMS, other, T0, window=0) is None


# -- secrets ---------------------------------------------------------------------------


def test_new_secret_is_20_random_bytes() -> None:
    secrets = {otp.new_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(len(s) == 20 for s in secrets)


def test_encode_secret_is_32_base32_chars_without_padding() -> None:
    for secret in (otp.new_secret(), bytes(20), b"\xff" * 20):
        encoded = otp.encode_secret(secret)
        assert re.fullmatch(r"[A-Z2-7]{32}", encoded)
        assert base64.b32decode(encoded) == secret
    # A length that would need padding: it is stripped, not kept.
    assert "=" not in otp.encode_secret(b"12345")


# -- otpauth URI -----------------------------------------------------------------------


def _split(uri: str) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    return parts.path[1:], parse_qs(parts.query, keep_blank_values=True)


def test_otpauth_uri_label_is_percent_encoded_issuer_and_account() -> None:
    uri = otp.otpauth_uri(SECRET, PARAMS, "Example Co", "alice@example.com")
    label, query = _split(uri)
    assert label == "Example%20Co:alice%40example.com"
    assert label.count(":") == 1
    assert " " not in uri and "@" not in uri
    assert query == {"secret": [otp.encode_secret(SECRET)], "issuer": ["Example Co"]}


def test_otpauth_uri_encodes_characters_that_would_break_the_uri() -> None:
    issuer, account = "A&B=C?D#E/F%G+H", "bob+x y/é"
    uri = otp.otpauth_uri(SECRET, PARAMS, issuer, account)
    label, query = _split(uri)
    raw_issuer, raw_account = label.split(":")
    assert unquote(raw_issuer) == issuer
    assert unquote(raw_account) == account
    assert query["issuer"] == [issuer]
    assert set(query) == {"secret", "issuer"}


def test_otpauth_uri_omits_default_parameters() -> None:
    uri = otp.otpauth_uri(SECRET, TotpParams(Algorithm.SHA1, 6, 30), "totpd", "alice")
    _, query = _split(uri)
    assert set(query) == {"secret", "issuer"}
    assert "algorithm" not in uri and "digits" not in uri and "period" not in uri


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (TotpParams(Algorithm.SHA256), {"algorithm": ["SHA256"]}),
        (TotpParams(Algorithm.SHA512), {"algorithm": ["SHA512"]}),
        (TotpParams(digits=8), {"digits": ["8"]}),
        (TotpParams(period=60), {"period": ["60"]}),
        (
            TotpParams(Algorithm.SHA512, 8, 60),
            {"algorithm": ["SHA512"], "digits": ["8"], "period": ["60"]},
        ),
    ],
)
def test_otpauth_uri_spells_out_non_default_parameters(
    params: TotpParams, expected: dict[str, list[str]]
) -> None:
    _, query = _split(otp.otpauth_uri(SECRET, params, "totpd", "alice"))
    extra = {k: v for k, v in query.items() if k not in ("secret", "issuer")}
    assert extra == expected


@pytest.mark.parametrize(
    "params",
    [
        TotpParams(),
        TotpParams(Algorithm.SHA256, 8, 60),
        TotpParams(Algorithm.SHA512, 6, 30),
        TotpParams(Algorithm.SHA1, 8, 30),
    ],
)
def test_otpauth_uri_round_trips_through_pyotp(params: TotpParams) -> None:
    secret = otp.new_secret()
    uri = otp.otpauth_uri(secret, params, "Example Co", "alice@example.com")
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.secret == otp.encode_secret(secret)
    assert parsed.digits == params.digits
    assert parsed.interval == params.period
    assert parsed.issuer == "Example Co"
    assert parsed.name == "alice@example.com"
    assert parsed.digest().name == params.algorithm.value.lower()
    # And the app that scanned it shows the codes the server accepts.
    step = otp.time_step(T0, params.period)
    assert parsed.at(T0) == otp.code_at(secret, params, step)
