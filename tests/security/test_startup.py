"""Startup refusals: production without caller authentication, half-configured TLS, a
malformed callers file, a Redis that may evict keys."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.live_server import TotpdProcess, server_env
from totpd.api.server import RPC_NAMES
from totpd.app import StartupError, check_eviction_policy, load_security
from totpd.callers import Callers, CallersError, hash_token
from totpd.config import Environment, Settings
from totpd.keyring import Keyring
from totpd.store.redis_store import RedisStore

from .certs import Pki
from .conftest import CALLERS_TOML, WEB_TOKEN

PRODUCTION = Settings(env=Environment.PRODUCTION)


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# -- load_security -----------------------------------------------------------------------


def test_production_without_callers_file_is_refused() -> None:
    with pytest.raises(StartupError, match="TOTPD_CALLERS_FILE"):
        load_security(PRODUCTION)


def test_development_without_callers_file_runs_open() -> None:
    assert load_security(Settings()) == (None, None)


def test_production_with_callers_and_mutual_tls(tmp_path: Path, pki: Pki) -> None:
    settings = dataclasses.replace(
        PRODUCTION,
        callers_file=_write(tmp_path, "callers.toml", CALLERS_TOML),
        tls_cert_file=_write(tmp_path, "cert.pem", pki.server.cert_pem),
        tls_key_file=_write(tmp_path, "key.pem", pki.server.key_pem),
        tls_client_ca_file=_write(tmp_path, "ca.pem", pki.ca.cert_pem),
    )
    tls, callers = load_security(settings)
    assert tls is not None and tls.client_ca == pki.ca.cert_pem
    assert callers is not None and callers.names == ["admin", "web"]


@pytest.mark.parametrize(
    "files",
    [
        ("tls_cert_file",),
        ("tls_key_file",),
        ("tls_client_ca_file",),
        ("tls_client_ca_file", "tls_cert_file"),
    ],
)
def test_half_configured_tls_is_refused(tmp_path: Path, pki: Pki, files: tuple[str, ...]) -> None:
    path = _write(tmp_path, "some.pem", pki.server.cert_pem)
    with pytest.raises(StartupError, match="TOTPD_TLS_"):
        load_security(dataclasses.replace(Settings(), **{name: path for name in files}))


def test_unreadable_tls_file_is_refused(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        Settings(), tls_cert_file=tmp_path / "missing.pem", tls_key_file=tmp_path / "k.pem"
    )
    with pytest.raises(StartupError, match="TOTPD_TLS_CERT_FILE"):
        load_security(settings)


# -- the callers file --------------------------------------------------------------------

_HASH = hash_token(WEB_TOKEN)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "at least one"),
        ("[callers.web]\nrpcs = ['GetTotp']\n", "tls_identities' or 'token_sha256"),
        (f"[callers.web]\ntoken_sha256 = ['{_HASH}']\nrpcs = []\n", "lists no RPC"),
        (f"[callers.web]\ntoken_sha256 = ['{_HASH}']\nrpcs = ['GetTOTP']\n", "unknown RPCs"),
        (f"[callers.web]\ntoken_sha256 = ['{WEB_TOKEN}']\nrpcs = ['GetTotp']\n", "64 lowercase"),
        (f"[callers.web]\ntoken_sha256 = ['{_HASH.upper()}']\nrpcs = ['GetTotp']\n", "64 lower"),
        (
            f"[callers.a]\ntoken_sha256 = ['{_HASH}']\nrpcs = ['GetTotp']\n"
            f"[callers.b]\ntoken_sha256 = ['{_HASH}']\nrpcs = ['GetTotp']\n",
            "listed twice",
        ),
        (
            "[callers.a]\ntls_identities = ['x.example']\nrpcs = ['GetTotp']\n"
            "[callers.b]\ntls_identities = ['x.example']\nrpcs = ['GetTotp']\n",
            "listed twice",
        ),
        ("[callers.web]\ntokens = ['x']\nrpcs = ['GetTotp']\n", "unknown keys"),
        ("[callers.web]\ntls_identities = 'x'\nrpcs = ['GetTotp']\n", "list of strings"),
        ("callers = 1\n", "at least one"),
        ("[other]\n", "unknown top-level"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_malformed_callers_files_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(CallersError, match=complaint):
        Callers.parse(text, RPC_NAMES)


def test_a_missing_callers_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CallersError, match="cannot read"):
        Callers.load(tmp_path / "nope.toml", RPC_NAMES)


def test_token_lookup() -> None:
    callers = Callers.parse(CALLERS_TOML, RPC_NAMES)
    found = callers.by_token(WEB_TOKEN)
    assert found is not None and found.identity == "web"
    assert found.caller.may_call("CreateTotp") and not found.caller.may_call("DeleteTotp")
    assert callers.by_token("") is None
    assert callers.by_tls_identities(["nobody", "admin.example.test"]) is not None
    # A certificate naming two different callers identifies nobody.
    both = ["admin.example.test", "spiffe://example.test/ns/prod/sa/web"]
    assert callers.by_tls_identities(both) is None


# -- the eviction policy -----------------------------------------------------------------


async def test_evicting_redis_is_refused_unless_allowed(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    await check_eviction_policy(store, Settings())  # the test Redis is noeviction
    await redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(StartupError, match="allkeys-lru"):
            await check_eviction_policy(store, Settings())
        await check_eviction_policy(store, Settings(allow_evicting_redis=True))
        await redis_client.config_set("maxmemory-policy", "volatile-ttl")
        with pytest.raises(StartupError, match="volatile-ttl"):
            await check_eviction_policy(store, Settings())
    finally:
        await redis_client.config_set("maxmemory-policy", "noeviction")


# -- the real process --------------------------------------------------------------------


def _keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    Keyring.generate().write_new(path)
    return path


def test_production_process_without_callers_exits_1(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "totpd"],
        env=server_env(tmp_path, ENV="production", KEYS_FILE=str(_keys_file(tmp_path))),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 1, done.stderr
    assert "totpd: cannot start:" in done.stderr and "TOTPD_CALLERS_FILE" in done.stderr
    assert "Traceback" not in done.stderr


def test_production_process_refuses_an_evicting_redis(
    tmp_path: Path, redis_server, pki: Pki
) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "totpd"],
            env=server_env(
                tmp_path,
                ENV="production",
                KEYS_FILE=str(_keys_file(tmp_path)),
                CALLERS_FILE=str(_write(tmp_path, "callers.toml", CALLERS_TOML)),
                REDIS_URL=redis_server.url,
            ),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
        )
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.close()
    assert done.returncode == 1, done.stderr
    assert "maxmemory-policy" in done.stderr and "TOTPD_ALLOW_EVICTING_REDIS" in done.stderr


def test_development_process_says_loudly_that_it_is_open(tmp_path: Path) -> None:
    process = TotpdProcess(tmp_path)
    process.start()
    try:
        assert "NO CALLER AUTHENTICATION" in process.log
    finally:
        assert process.stop() == 0


def test_production_process_with_mutual_tls_starts(tmp_path: Path, pki: Pki) -> None:
    process = TotpdProcess(
        tmp_path,
        ENV="production",
        KEYS_FILE=str(_keys_file(tmp_path)),
        CALLERS_FILE=str(_write(tmp_path, "callers.toml", CALLERS_TOML)),
        TLS_CERT_FILE=str(_write(tmp_path, "cert.pem", pki.server.cert_pem)),
        TLS_KEY_FILE=str(_write(tmp_path, "key.pem", pki.server.key_pem)),
        TLS_CLIENT_CA_FILE=str(_write(tmp_path, "ca.pem", pki.ca.cert_pem)),
    )
    process.start()
    try:
        assert "tls=mutual, callers=admin,web" in process.log
        assert "NO CALLER AUTHENTICATION" not in process.log
    finally:
        assert process.stop() == 0


def test_hash_token_command_prints_the_callers_file_entry(tmp_path: Path) -> None:
    def run(stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "totpd", "hash-token"],
            input=stdin,
            env=server_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=20,
        )

    done = run(WEB_TOKEN + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == hash_token(WEB_TOKEN)
    assert WEB_TOKEN not in done.stdout + done.stderr
    assert run("short\n").returncode == 2
