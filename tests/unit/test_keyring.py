"""The keyring: AES-GCM sealing bound to its record, keyed hashes, rotation, the keys file."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from totpd.keyring import DecryptionError, Keyring, KeyringError
from totpd.model import SealedSecret

PLAINTEXT = b"\x00\x01 twenty byte secret"


def _key(fill: int) -> str:
    return base64.b64encode(bytes([fill]) * 32).decode()


def _keys_json(
    encryption: dict[str, str] | None = None,
    enc_primary: str = "k1",
    hashing: dict[str, str] | None = None,
    hash_primary: str = "h1",
) -> dict[str, object]:
    return {
        "encryption": {"primary": enc_primary, "keys": encryption or {"k1": _key(1)}},
        "hashing": {"primary": hash_primary, "keys": hashing or {"h1": _key(2)}},
    }


def _load(tmp_path: Path, data: object, name: str = "keys.json") -> Keyring:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return Keyring.load(path)


# -- sealing ---------------------------------------------------------------------------


def test_seal_open_round_trip() -> None:
    keyring = Keyring.generate()
    sealed = keyring.seal(PLAINTEXT, "secret", "alice", "totp-1")
    assert sealed.key_id == "k1"
    assert PLAINTEXT not in sealed.blob
    assert keyring.open(sealed, "secret", "alice", "totp-1") == PLAINTEXT


def test_seal_uses_a_fresh_nonce_each_time() -> None:
    keyring = Keyring.generate()
    a = keyring.seal(PLAINTEXT, "secret", "alice", "totp-1")
    b = keyring.seal(PLAINTEXT, "secret", "alice", "totp-1")
    assert a.blob[:12] != b.blob[:12]
    assert a.blob != b.blob


@pytest.mark.parametrize(
    ("purpose", "bound_to"),
    [
        ("secret", ("bob", "totp-1")),  # another user
        ("secret", ("alice", "totp-2")),  # another enrollment
        ("recovery-codes", ("alice", "totp-1")),  # another purpose
        ("secret", ("alicetotp-1",)),  # the parts run together
        ("secret", ("alic", "etotp-1")),  # the same bytes split elsewhere
        ("secret", ("alice", "totp-1", "")),  # an extra empty part
    ],
)
def test_open_fails_for_any_other_binding(purpose: str, bound_to: tuple[str, ...]) -> None:
    keyring = Keyring.generate()
    sealed = keyring.seal(PLAINTEXT, "secret", "alice", "totp-1")
    with pytest.raises(DecryptionError):
        keyring.open(sealed, purpose, *bound_to)


@pytest.mark.parametrize("index", [0, 5, 12, 20, -1])
def test_open_fails_if_any_byte_is_flipped(index: int) -> None:
    keyring = Keyring.generate()
    sealed = keyring.seal(PLAINTEXT, "secret", "alice", "totp-1")
    blob = bytearray(sealed.blob)
    blob[index] ^= 0x01
    with pytest.raises(DecryptionError):
        keyring.open(SealedSecret(sealed.key_id, bytes(blob)), "secret", "alice", "totp-1")


def test_open_fails_under_another_keyring() -> None:
    sealed = Keyring.generate().seal(PLAINTEXT, "secret", "alice", "totp-1")
    with pytest.raises(DecryptionError):
        Keyring.generate().open(sealed, "secret", "alice", "totp-1")


def test_open_fails_for_an_unknown_key_id() -> None:
    keyring = Keyring.generate()
    sealed = keyring.seal(PLAINTEXT, "secret", "alice", "totp-1")
    with pytest.raises(DecryptionError):
        keyring.open(SealedSecret("k9", sealed.blob), "secret", "alice", "totp-1")


@pytest.mark.parametrize("length", [12, 20, 27])
def test_open_fails_for_a_truncated_blob(length: int) -> None:
    keyring = Keyring.generate()
    sealed = keyring.seal(PLAINTEXT, "secret", "alice", "totp-1")
    with pytest.raises(DecryptionError):
        keyring.open(SealedSecret("k1", sealed.blob[:length]), "secret", "alice", "totp-1")


@pytest.mark.parametrize("length", [0, 5])
def test_open_fails_cleanly_for_a_blob_shorter_than_a_nonce(length: int) -> None:
    keyring = Keyring.generate()
    sealed = keyring.seal(PLAINTEXT, "secret", "alice", "totp-1")
    with pytest.raises(DecryptionError):
        keyring.open(SealedSecret("k1", sealed.blob[:length]), "secret", "alice", "totp-1")


def test_rotation_opens_old_values_and_seals_new_ones_under_the_new_primary(
    tmp_path: Path,
) -> None:
    before = _load(tmp_path, _keys_json({"k1": _key(1)}, "k1"), "before.json")
    old = before.seal(PLAINTEXT, "secret", "alice", "totp-1")
    assert old.key_id == "k1"

    after = _load(tmp_path, _keys_json({"k1": _key(1), "k2": _key(3)}, "k2"), "after.json")
    assert after.open(old, "secret", "alice", "totp-1") == PLAINTEXT
    new = after.seal(PLAINTEXT, "secret", "alice", "totp-1")
    assert new.key_id == "k2"
    assert after.open(new, "secret", "alice", "totp-1") == PLAINTEXT
    # The old keyring does not know k2: the new value really is under the new key.
    with pytest.raises(DecryptionError):
        before.open(new, "secret", "alice", "totp-1")


# -- keyed hashes ----------------------------------------------------------------------


def test_digest_is_deterministic_and_32_bytes() -> None:
    keyring = Keyring.generate()
    a = keyring.digest("ckss2skxeb0w", "alice")
    assert a == keyring.digest("ckss2skxeb0w", "alice")
    assert len(a) == 32


def test_digest_differs_per_value_user_and_key(tmp_path: Path) -> None:
    keyring = _load(tmp_path, _keys_json(hashing={"h1": _key(2), "h2": _key(4)}))
    base = keyring.digest("ckss2skxeb0w", "alice")
    assert keyring.digest("ckss2skxeb0x", "alice") != base
    assert keyring.digest("ckss2skxeb0w", "bob") != base
    assert keyring.digest("ckss2skxeb0w", "alice", "h1") == base
    assert keyring.digest("ckss2skxeb0w", "alice", "h2") != base
    assert Keyring.generate().digest("ckss2skxeb0w", "alice") != base


def test_digest_is_the_documented_hmac_and_never_changes(tmp_path: Path) -> None:
    # Stored recovery codes are these digests: any change to how they are computed would
    # lock every user out of their codes. HMAC-SHA256 over "totpd/v1/recovery" and the
    # length-prefixed user id and code, pinned here from the stdlib's hmac.
    keyring = _load(
        tmp_path, _keys_json(hashing={"h1": base64.b64encode(bytes(range(32))).decode()})
    )
    assert keyring.digest("ckss2skxeb0w", "alice").hex() == (
        "4909face5d1f21bb3a049cae9c32987db9c01e2972267afd47ca0b7460c1f039"
    )


def test_digest_binds_user_and_value_unambiguously() -> None:
    keyring = Keyring.generate()
    assert keyring.digest("bc", "a") != keyring.digest("c", "ab")


def test_digests_has_one_entry_per_hashing_key(tmp_path: Path) -> None:
    keyring = _load(tmp_path, _keys_json(hashing={"h1": _key(2), "h2": _key(4)}, hash_primary="h2"))
    assert keyring.hashing_key_id == "h2"
    digests = keyring.digests("ckss2skxeb0w", "alice")
    assert set(digests) == {"h1", "h2"}
    assert digests["h1"] == keyring.digest("ckss2skxeb0w", "alice", "h1")
    assert digests["h2"] == keyring.digest("ckss2skxeb0w", "alice")
    assert digests["h1"] != digests["h2"]


def test_digest_survives_rotation_of_the_hashing_key(tmp_path: Path) -> None:
    before = _load(tmp_path, _keys_json(hashing={"h1": _key(2)}), "before.json")
    after = _load(
        tmp_path, _keys_json(hashing={"h1": _key(2), "h2": _key(4)}, hash_primary="h2"), "a.json"
    )
    stored = before.digest("ckss2skxeb0w", "alice")
    assert stored in after.digests("ckss2skxeb0w", "alice").values()
    assert after.digest("ckss2skxeb0w", "alice") != stored


# -- the keys file ---------------------------------------------------------------------


def test_write_new_then_load_gives_the_same_keys(tmp_path: Path) -> None:
    keyring = Keyring.generate()
    path = tmp_path / "nested" / "dir" / "keys.json"
    keyring.write_new(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Keyring.load(path)
    sealed = keyring.seal(PLAINTEXT, "secret", "alice", "totp-1")
    assert loaded.open(sealed, "secret", "alice", "totp-1") == PLAINTEXT
    assert loaded.digest("x", "alice") == keyring.digest("x", "alice")
    data = json.loads(path.read_text())
    assert data["encryption"]["primary"] == "k1"
    assert data["hashing"]["primary"] == "h1"


def test_write_new_is_owner_only_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        Keyring.generate().write_new(tmp_path / "keys.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600


def test_write_new_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("precious")
    with pytest.raises(FileExistsError):
        Keyring.generate().write_new(path)
    assert path.read_text() == "precious"


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyringError):
        Keyring.load(tmp_path / "absent.json")


@pytest.mark.parametrize(
    "data",
    [
        "",
        "{not json",
        "[]",
        '"a string"',
        "null",
        json.dumps({"hashing": _keys_json()["hashing"]}),  # no encryption section
        json.dumps({"encryption": _keys_json()["encryption"]}),  # no hashing section
        json.dumps({"encryption": "k1", "hashing": _keys_json()["hashing"]}),
        json.dumps(_keys_json({"k1": _key(1)}, "k2")),  # primary not in keys
        json.dumps(_keys_json(hashing={"h1": _key(2)}, hash_primary="h0")),
        json.dumps(_keys_json({"k1": base64.b64encode(bytes(16)).decode()})),  # 16 bytes
        json.dumps(_keys_json({"k1": base64.b64encode(bytes(33)).decode()})),  # 33 bytes
        json.dumps(_keys_json(hashing={"h1": base64.b64encode(bytes(31)).decode()})),
        json.dumps(_keys_json({"k1": "not base64!!"})),
        json.dumps(_keys_json({"k1": _key(1)[:-2] + "%%"})),
        json.dumps(_keys_json({"k1": _key(1) + "\n"})),
        json.dumps({"encryption": {"primary": "k1", "keys": {}}, "hashing": {}}),
        json.dumps({**_keys_json(), "encryption": {"primary": 1, "keys": {"1": _key(1)}}}),
    ],
)
def test_load_rejects_malformed_files(tmp_path: Path, data: str) -> None:
    with pytest.raises(KeyringError):
        _load(tmp_path, data)


def test_load_rejects_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(KeyringError):
        Keyring.load(path)


def test_load_rejects_a_non_ascii_key(tmp_path: Path) -> None:
    with pytest.raises(KeyringError):
        _load(tmp_path, _keys_json({"k1": "ключ"}))
