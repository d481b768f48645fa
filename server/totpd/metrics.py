"""Prometheus metrics: the only module that imports ``prometheus_client``.

``Metrics`` owns the metric families (in a registry of its own, so several servers can run
in one process) and offers plain callbacks that the composition root hands to the layers
that count: the RPC interceptor (``rpc_started``, ``rpc``), the service (``event``, its
metrics port) and the store (``store_call``; ``enrollment_expired`` for its expiry
listener). No label ever carries a user id, TOTP id, code or secret: every label value
comes from a small fixed set (RPC names, status code names, outcomes, store operation
names). docs/observability.md lists the families.

One process serves ``/metrics`` itself (``serve_metrics``). With ``TOTPD_WORKERS`` > 1 the
workers cannot share one port, so prometheus_client's multiprocess mode is used instead:
``shared_metrics`` (in the parent, before forking) points every worker's values at files
under ``<data_dir>/metrics`` and, once the workers run, serves their sum from the parent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
    values,
)

from .model import EventType

log = logging.getLogger("totpd")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds. A TotpService call is a few Redis round trips: most land well under 10 ms.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Audit-event outcomes as metric label values (the service's own vocabulary).
_CHECK_RPCS = {EventType.VERIFY: "VerifyTotp", EventType.USE_RECOVERY_CODE: "UseRecoveryCode"}


class Metrics:
    """The metric families of one server process, and the callbacks that update them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.rpcs = Counter(
            "totpd_rpcs",
            "TotpService calls handled, by method and final status code.",
            ["method", "code"],
            registry=r,
        )
        self.rpc_duration = Histogram(
            "totpd_rpc_duration_seconds",
            "Time to handle a TotpService call, by method and final status code.",
            ["method", "code"],
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.rpcs_in_flight = Gauge(
            "totpd_rpcs_in_flight",
            "TotpService calls being handled now, by method.",
            ["method"],
            multiprocess_mode="livesum",  # TOTPD_WORKERS > 1: the sum over live workers
            registry=r,
        )
        self.checks = Counter(
            "totpd_checks",
            "Code checks (VerifyTotp, UseRecoveryCode) by outcome: accepted, rejected, "
            "replayed, locked, not_found.",
            ["rpc", "outcome"],
            registry=r,
        )
        self.lockouts = Counter(
            "totpd_lockouts", "Locks engaged by failed checks, by kind.", ["kind"], registry=r
        )
        self.enrollments_created = Counter(
            "totpd_enrollments_created", "Pending enrollments created by CreateTotp.", registry=r
        )
        self.enrollments_expired = Counter(
            "totpd_enrollments_expired",
            "Pending enrollments that Redis expired unactivated (from keyspace "
            "notifications; stays 0 where Redis does not send them).",
            registry=r,
        )
        self.activations = Counter(
            "totpd_activations",
            "ActivateTotp attempts by outcome: activated, rejected, discarded, not_found.",
            ["outcome"],
            registry=r,
        )
        self.deletions = Counter("totpd_deletions", "TOTPs deleted.", registry=r)
        self.regenerations = Counter(
            "totpd_recovery_codes_regenerated", "Recovery code sets regenerated.", registry=r
        )
        self.store_duration = Histogram(
            "totpd_store_operation_duration_seconds",
            "Time of one store (Redis) operation, by operation and result (ok, unavailable, "
            "error).",
            ["operation", "result"],
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "totpd_store_errors",
            "Failed store operations, by operation and reason (exception class or Redis "
            "error prefix).",
            ["operation", "reason"],
            registry=r,
        )

    # -- the callbacks -------------------------------------------------------------------

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: labels() validates and takes a lock on
        every call, and the same few label sets come up on every RPC."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def rpc_started(self, method: str) -> None:
        self._child(self.rpcs_in_flight, method).inc()

    def rpc(self, method: str, code: str, seconds: float) -> None:
        """A call that ``rpc_started`` counted has finished."""
        self._child(self.rpcs_in_flight, method).dec()
        self._child(self.rpcs, method, code).inc()
        self._child(self.rpc_duration, method, code).observe(seconds)

    def event(self, type_: EventType, outcome: str) -> None:
        """The service's metrics port: one audit-worthy event and its outcome."""
        if type_ in _CHECK_RPCS:
            self._child(self.checks, _CHECK_RPCS[type_], outcome).inc()
        elif type_ is EventType.LOCKOUT:
            self.lockouts.labels(outcome).inc()
        elif type_ is EventType.CREATE:
            self.enrollments_created.inc()
        elif type_ is EventType.ACTIVATE:
            self._child(self.activations, outcome).inc()
        elif type_ is EventType.DELETE:
            self.deletions.inc()
        elif type_ is EventType.REGENERATE_RECOVERY_CODES:
            self.regenerations.inc()

    def enrollment_expired(self) -> None:
        """The store's expiry listener saw a pending enrollment expire."""
        self.enrollments_expired.inc()

    def store_call(self, operation: str, seconds: float, error: str | None) -> None:
        """One store operation; ``error`` is None, or ``unavailable:<reason>`` /
        ``error:<reason>``."""
        result, _, reason = error.partition(":") if error else ("ok", "", "")
        self._child(self.store_duration, operation, result).observe(seconds)
        if error:
            self.store_errors.labels(operation, reason or result).inc()


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class MetricsServer:
    """A running ``/metrics`` HTTP endpoint (prometheus_client's, in a daemon thread)."""

    def __init__(self, address: str, registry: CollectorRegistry) -> None:
        host, port = _split(address)
        server, thread = start_http_server(port, host, registry)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.port: int = server.server_port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/metrics"
        # Tests (and people) find the port here when TOTPD_METRICS_LISTEN asks for port 0.
        log.info("totpd metrics on %s", self.url)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@contextlib.contextmanager
def serve_metrics(address: str, registry: CollectorRegistry) -> Iterator[MetricsServer | None]:
    """Serve ``registry`` on ``address`` for as long as the block runs; '' serves nothing.

    An address that cannot be bound is logged as an error, not fatal: a taken metrics port
    must not stop the second factor of every user (the scrape target's ``up`` shows it).
    """
    if not address:
        yield None
        return
    try:
        server = MetricsServer(address, registry)
    except OSError as exc:
        log.error("cannot serve metrics on %s: %s (serving gRPC without)", address, exc)
        yield None
        return
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def shared_metrics(address: str, directory: Path) -> Iterator[Callable[[], None]]:
    """For forked workers: from here on, metric values live in files under ``directory``
    (emptied first: a previous run's files would add to this run's counters). Yields the
    function the parent calls after forking to serve the workers' sum on ``address``
    ('' disables metrics: nothing is shared and the function does nothing)."""
    if not address:
        yield lambda: None
        return
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus_client picks its value class when it is imported; switch it now, so the
    # families each worker creates after the fork write to per-process files.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    with contextlib.ExitStack() as stack:

        def start() -> None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                registry, path=str(directory)
            )
            stack.enter_context(serve_metrics(address, registry))

        yield start
