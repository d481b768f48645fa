"""Settings from the environment: defaults, parsing, ranges, and errors that name the variable."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from totpd.config import ConfigError, Environment, Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.listen == "127.0.0.1:50051"
    assert settings.redis_url is None
    assert settings.data_dir == Path("var")
    assert settings.issuer == "totpd"
    assert settings.keys_file is None
    assert settings.resolved_keys_file == Path("var/keys.json")
    assert settings.env is Environment.DEVELOPMENT
    assert not settings.production
    assert settings.reflection is True
    assert settings.key_prefix == "totpd"
    assert settings.redis_timeout == 1.0
    assert settings.activation_max_attempts == 5
    assert settings.verify_window == 1
    assert settings.lockout_threshold == 5
    assert settings.lockout_base_seconds == 60.0
    assert settings.lockout_max_seconds == 3600.0
    assert settings.lockout_permanent_after == 100
    assert settings.events_maxlen == 100_000
    assert settings.shutdown_grace == 10.0
    assert settings.log_level == "INFO"


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().issuer = "other"  # type: ignore[misc]


def test_empty_values_mean_the_default() -> None:
    env = {f"TOTPD_{name}": "" for name in ("LISTEN", "ENV", "VERIFY_WINDOW", "REFLECTION")}
    assert Settings.from_env(env) == Settings()


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"LISTEN": "0.0.0.0:1", "totpd_issuer": "x"}) == Settings()


def test_every_variable_is_parsed() -> None:
    env = {
        "TOTPD_LISTEN": "0.0.0.0:6000",
        "TOTPD_REDIS_URL": "redis://redis.internal:6380/2",
        "TOTPD_DATA_DIR": "/srv/totpd",
        "TOTPD_ISSUER": "Example Co",
        "TOTPD_KEYS_FILE": "/run/secrets/totpd-keys.json",
        "TOTPD_ENV": "production",
        "TOTPD_REFLECTION": "yes",
        "TOTPD_KEY_PREFIX": "mfa",
        "TOTPD_REDIS_TIMEOUT_SECONDS": "0.25",
        "TOTPD_ACTIVATION_MAX_ATTEMPTS": "3",
        "TOTPD_VERIFY_WINDOW": "2",
        "TOTPD_LOCKOUT_THRESHOLD": "10",
        "TOTPD_LOCKOUT_BASE_SECONDS": "30.5",
        "TOTPD_LOCKOUT_MAX_SECONDS": "7200",
        "TOTPD_LOCKOUT_PERMANENT_AFTER": "50",
        "TOTPD_EVENTS_MAXLEN": "1000",
        "TOTPD_SHUTDOWN_GRACE_SECONDS": "2.5",
        "TOTPD_LOG_LEVEL": "debug",
    }
    assert Settings.from_env(env) == Settings(
        listen="0.0.0.0:6000",
        redis_url="redis://redis.internal:6380/2",
        data_dir=Path("/srv/totpd"),
        issuer="Example Co",
        keys_file=Path("/run/secrets/totpd-keys.json"),
        env=Environment.PRODUCTION,
        reflection=True,
        key_prefix="mfa",
        redis_timeout=0.25,
        activation_max_attempts=3,
        verify_window=2,
        lockout_threshold=10,
        lockout_base_seconds=30.5,
        lockout_max_seconds=7200.0,
        lockout_permanent_after=50,
        events_maxlen=1000,
        shutdown_grace=2.5,
        log_level="DEBUG",
    )


def test_keys_file_defaults_to_the_data_dir() -> None:
    assert Settings.from_env({"TOTPD_DATA_DIR": "/srv/t"}).resolved_keys_file == Path(
        "/srv/t/keys.json"
    )
    explicit = Settings.from_env({"TOTPD_DATA_DIR": "/srv/t", "TOTPD_KEYS_FILE": "/k.json"})
    assert explicit.resolved_keys_file == Path("/k.json")


@pytest.mark.parametrize(
    ("name", "raw", "attribute", "value"),
    [
        ("REDIS_TIMEOUT_SECONDS", "0.01", "redis_timeout", 0.01),
        ("REDIS_TIMEOUT_SECONDS", "60", "redis_timeout", 60.0),
        ("ACTIVATION_MAX_ATTEMPTS", "1", "activation_max_attempts", 1),
        ("ACTIVATION_MAX_ATTEMPTS", "100", "activation_max_attempts", 100),
        ("VERIFY_WINDOW", "0", "verify_window", 0),
        ("VERIFY_WINDOW", "2", "verify_window", 2),
        ("LOCKOUT_THRESHOLD", "1", "lockout_threshold", 1),
        ("LOCKOUT_BASE_SECONDS", "86400", "lockout_base_seconds", 86400.0),
        ("LOCKOUT_MAX_SECONDS", "1", "lockout_max_seconds", 1.0),
        ("LOCKOUT_PERMANENT_AFTER", "100", "lockout_permanent_after", 100),
        ("EVENTS_MAXLEN", "1", "events_maxlen", 1),
        ("EVENTS_MAXLEN", "1000000000", "events_maxlen", 10**9),
        ("SHUTDOWN_GRACE_SECONDS", "0", "shutdown_grace", 0.0),
        ("SHUTDOWN_GRACE_SECONDS", "600", "shutdown_grace", 600.0),
        ("VERIFY_WINDOW", " 1 ", "verify_window", 1),  # int() allows the spaces
    ],
)
def test_range_limits_are_inclusive(name: str, raw: str, attribute: str, value: object) -> None:
    assert getattr(Settings.from_env({f"TOTPD_{name}": raw}), attribute) == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("REDIS_TIMEOUT_SECONDS", "0"),
        ("REDIS_TIMEOUT_SECONDS", "0.009"),
        ("REDIS_TIMEOUT_SECONDS", "61"),
        ("REDIS_TIMEOUT_SECONDS", "nan"),
        ("REDIS_TIMEOUT_SECONDS", "inf"),
        ("REDIS_TIMEOUT_SECONDS", "1s"),
        ("ACTIVATION_MAX_ATTEMPTS", "0"),
        ("ACTIVATION_MAX_ATTEMPTS", "101"),
        ("ACTIVATION_MAX_ATTEMPTS", "5.0"),
        ("ACTIVATION_MAX_ATTEMPTS", "five"),
        ("VERIFY_WINDOW", "-1"),
        ("VERIFY_WINDOW", "3"),
        ("VERIFY_WINDOW", "1.5"),
        ("LOCKOUT_THRESHOLD", "0"),
        ("LOCKOUT_THRESHOLD", "101"),
        ("LOCKOUT_BASE_SECONDS", "0.5"),
        ("LOCKOUT_BASE_SECONDS", "86401"),
        ("LOCKOUT_BASE_SECONDS", "-60"),
        ("LOCKOUT_MAX_SECONDS", "0"),
        ("LOCKOUT_MAX_SECONDS", "1e9"),
        ("LOCKOUT_PERMANENT_AFTER", "0"),
        ("LOCKOUT_PERMANENT_AFTER", "101"),
        ("EVENTS_MAXLEN", "0"),
        ("EVENTS_MAXLEN", "1000000001"),
        ("EVENTS_MAXLEN", "1e5"),
        ("SHUTDOWN_GRACE_SECONDS", "-1"),
        ("SHUTDOWN_GRACE_SECONDS", "601"),
        ("SHUTDOWN_GRACE_SECONDS", "ten"),
        ("ENV", "staging"),
        ("ENV", "PRODUCTION"),
        ("ENV", "prod"),
        ("REFLECTION", "maybe"),
        ("REFLECTION", "2"),
        ("REFLECTION", "enabled"),
    ],
)
def test_malformed_values_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({f"TOTPD_{name}": raw})
    assert f"TOTPD_{name}" in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_reflection_booleans(raw: str, expected: bool) -> None:
    for env in ("development", "production"):
        settings = Settings.from_env({"TOTPD_ENV": env, "TOTPD_REFLECTION": raw})
        assert settings.reflection is expected


def test_reflection_defaults_follow_the_environment() -> None:
    assert Settings.from_env({"TOTPD_ENV": "development"}).reflection is True
    production = Settings.from_env({"TOTPD_ENV": "production"})
    assert production.production
    assert production.reflection is False


def test_unknown_log_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"TOTPD_LOG_LEVEL": "verbose"})
    assert "TOTPD_LOG_LEVEL" in str(caught.value)


def test_known_log_levels_are_accepted() -> None:
    for level in ("debug", "INFO", "Warning", "ERROR", "critical"):
        parsed = Settings.from_env({"TOTPD_LOG_LEVEL": level}).log_level
        assert parsed == level.upper()
        assert isinstance(logging.getLevelName(parsed), int)


@pytest.mark.parametrize(
    "issuer", ["Example:Co", "x" * 65, "Example\nCo"], ids=["colon", "long", "newline"]
)
def test_default_issuer_is_checked_like_a_request_issuer(issuer: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"TOTPD_ISSUER": issuer})
    assert "TOTPD_ISSUER" in str(caught.value)
