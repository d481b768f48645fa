"""``TOTPD_WORKERS=N``: N server processes answering on one port.

One grpc.aio process is bounded by one core (the GIL), so more cores need more processes.
The parent does everything that must happen once (load or create the keys file, start the
embedded Redis, pick the port when the address asks for port 0), then forks N workers
before any gRPC object exists: gRPC's threads and locks do not survive a fork. Each worker
runs the ordinary ``serve()``; gRPC binds its listening socket with SO_REUSEPORT (the
default on Linux, ``grpc.so_reuseport``), so the kernel spreads new connections over the
workers. The parent supervises: SIGTERM or SIGINT is forwarded to every worker, which
drains its calls as a single server would; if one worker dies, the others are stopped too
and the parent exits non-zero, for the orchestrator to restart the whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from types import FrameType

from .app import load_keyring, redis_url, serve
from .config import Settings
from .metrics import shared_metrics

log = logging.getLogger("totpd")


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@contextlib.contextmanager
def reserved_port(address: str) -> Iterator[str]:
    """``address`` with port 0 replaced by a free port, held (bound with SO_REUSEPORT but not
    listening, so it takes no connections) until the block ends; other addresses as they are."""
    host, port = _split(address)
    if port != 0:
        yield address
        return
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((bare, 0))
        yield f"{host}:{sock.getsockname()[1]}"


def _worker(settings: Settings, index: int) -> int:
    """The body of a forked worker; returns its exit status."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    log.info("worker %d started (pid %d)", index, os.getpid())
    try:
        asyncio.run(serve(settings))
    except Exception:
        log.exception("worker %d failed", index)
        return 1
    return 0


def _supervise(children: dict[int, int]) -> int:
    status = 0
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while children:
        pid, wait_status = os.wait()
        index = children.pop(pid, None)
        if index is None:
            continue  # not a worker (the embedded redis-server is reaped by its owner)
        code = os.waitstatus_to_exitcode(wait_status)
        if code != 0 and not stopping:
            log.error("worker %d (pid %d) exited with %d: stopping the others", index, pid, code)
            status = 1
            forward(signal.SIGTERM, None)
        status = status or (1 if code != 0 and code != -signal.SIGTERM else 0)
    return status


def run(settings: Settings) -> int:
    """Serve with ``settings.workers`` processes; returns the exit status for ``main``."""
    if settings.workers <= 1:
        asyncio.run(serve(settings))
        return 0
    load_keyring(settings)  # create the development keys file once, not once per worker
    with (
        redis_url(settings) as url,
        reserved_port(settings.listen) as listen,
        shared_metrics(settings.metrics_listen, settings.data_dir / "metrics") as serve_metrics,
    ):
        # Workers count into files under the data dir; only the parent serves /metrics.
        worker_settings = dataclasses.replace(
            settings,
            redis_url=url,
            listen=listen,
            keys_file=settings.resolved_keys_file,
            metrics_listen="",
        )
        log.info("starting %d workers on %s", settings.workers, listen)
        sys.stdout.flush()
        sys.stderr.flush()
        children: dict[int, int] = {}
        for index in range(settings.workers):
            pid = os.fork()
            if pid == 0:  # the worker: never return into the parent's context managers
                code = 1
                try:
                    # One listener per group, or each expiry would count N times.
                    code = _worker(
                        dataclasses.replace(
                            worker_settings,
                            count_expiries=index == 0 and bool(settings.metrics_listen),
                        ),
                        index,
                    )
                finally:
                    logging.shutdown()
                    os._exit(code)
            children[pid] = index
        serve_metrics()  # after forking: the workers must not inherit its socket or thread
        return _supervise(children)
