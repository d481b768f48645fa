"""The pieces without a server: the setting, the request id rule, the store observer."""

from __future__ import annotations

import pytest
import redis.asyncio as redis
from prometheus_client import generate_latest

from totpd.api.observability import request_id
from totpd.config import ConfigError, Settings
from totpd.errors import StoreUnavailable
from totpd.metrics import Metrics
from totpd.model import EventType
from totpd.store.redis_store import _unavailable_on_redis_errors


def test_metrics_listen_defaults_to_loopback_and_empty_disables() -> None:
    assert Settings.from_env({}).metrics_listen == "127.0.0.1:9464"
    assert Settings.from_env({"TOTPD_METRICS_LISTEN": ""}).metrics_listen == ""
    assert Settings.from_env({"TOTPD_METRICS_LISTEN": "[::]:0"}).metrics_listen == "[::]:0"
    with pytest.raises(ConfigError, match="TOTPD_METRICS_LISTEN"):
        Settings.from_env({"TOTPD_METRICS_LISTEN": "9464"})


def test_request_id_is_kept_only_when_it_is_a_plain_token() -> None:
    assert request_id([("x-request-id", "abc-123")]) == "abc-123"
    for bad in ("", "a b", "x" * 65, "line\nbreak", '{"json": 1}'):
        generated = request_id([("x-request-id", bad)])
        assert generated != bad and len(generated) == 16
    assert request_id(None) != request_id(None)


class _Store:
    def __init__(self, metrics: Metrics) -> None:
        self.observe_call = metrics.store_call

    @_unavailable_on_redis_errors
    async def fine(self) -> int:
        return 1

    @_unavailable_on_redis_errors
    async def down(self) -> int:
        raise redis.ConnectionError("connection refused to 10.0.0.1")

    @_unavailable_on_redis_errors
    async def full(self) -> int:
        raise redis.ResponseError("OOM command not allowed")


async def test_the_store_decorator_times_every_call_and_counts_errors_by_reason() -> None:
    metrics = Metrics()
    store = _Store(metrics)
    assert await store.fine() == 1
    with pytest.raises(StoreUnavailable):
        await store.down()
    with pytest.raises(StoreUnavailable):
        await store.full()
    text = generate_latest(metrics.registry).decode()
    assert 'totpd_store_operation_duration_seconds_count{operation="fine",result="ok"} 1.0' in text
    assert 'totpd_store_errors_total{operation="down",reason="ConnectionError"} 1.0' in text
    assert 'totpd_store_errors_total{operation="full",reason="OOM"} 1.0' in text
    assert "10.0.0.1" not in text


def test_service_events_map_to_their_families() -> None:
    metrics = Metrics()
    metrics.event(EventType.VERIFY, "replayed")
    metrics.event(EventType.LOCKOUT, "temporary")
    metrics.event(EventType.ACTIVATE, "discarded")
    text = generate_latest(metrics.registry).decode()
    assert 'totpd_checks_total{outcome="replayed",rpc="VerifyTotp"} 1.0' in text
    assert 'totpd_lockouts_total{kind="temporary"} 1.0' in text
    assert 'totpd_activations_total{outcome="discarded"} 1.0' in text
