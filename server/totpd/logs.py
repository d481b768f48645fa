"""totpd's logs: JSON lines on stderr, and a direct path for the line of every call.

Every record is one JSON object per line (``JsonFormatter``). The per-call line (logger
``totpd.rpc``, docs/observability.md) is written once for every RPC, so it has a path of
its own: ``JsonLines.rpc`` builds the same line as ``logging`` would, without a
``LogRecord``, the logger and handler chain, or a JSON encoder for fields that need no
escaping; and lines written in one turn of the event loop reach the stream in one write
at the end of that turn, not one write and flush each. Under load the ``logging`` path cost
about 0.06 ms a call, a tenth of a VerifyTotp (docs/performance.md).

``rpc_line`` picks that path only when the logging configuration is
``configure_logging``'s own (one ``JsonLines`` handler on the root, nothing on
``totpd.rpc``); under any other configuration (a test's log capture, an embedding
application's handlers) the line goes through ``logging`` like any other record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

RPC_LOGGER = "totpd.rpc"
_rpc_log = logging.getLogger(RPC_LOGGER)

#: (method, status code name, seconds, request id, caller identity): log one call.
RpcLine = Callable[[str, str, float, str, str], None]


class _Clock:
    """The default ``logging`` time format ("2026-11-22 06:55:37,123"), its date and time
    part worked out once a second rather than for each of the many lines of that second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def text(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        # The milliseconds as LogRecord computes them (truncated, not rounded).
        return f"{self._text},{int((created - second) * 1000):03d}"


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return self._clock.text(record.created)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)  # extra={"fields": {...}}: more keys
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class JsonLines(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs: JSON lines, plus the per-call line's
    direct path (``rpc``)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())
        self._clock = _Clock()
        self._pending: list[str] = []  # per-call lines not yet written

    def rpc(self, method: str, code: str, seconds: float, request_id: str, caller: str) -> None:
        """The line ``rpc_via_logging`` would write through this handler, character for
        character (tests/unit/test_logs.py compares them)."""
        if not _rpc_log.isEnabledFor(logging.INFO):
            return
        # method and code are RPC and status code names, request_id a plain token
        # (observability.request_id): nothing in them needs escaping. caller may.
        line = (
            f'{{"time": "{self._clock.text(time.time())}", "level": "INFO", '
            f'"logger": "{RPC_LOGGER}", "message": "rpc {method} {code}", '
            f'"method": "{method}", "code": "{code}", '
            f'"duration_ms": {round(seconds * 1000, 3)!r}, "request_id": "{request_id}", '
            f'"caller": {json.dumps(caller)}}}\n'
        )
        self.acquire()  # another thread's record may be writing the pending lines out
        try:
            self._pending.append(line)
            first = len(self._pending) == 1
        finally:
            self.release()
        if first:
            try:
                asyncio.get_running_loop().call_soon(self._write_pending)
            except RuntimeError:  # no event loop: nothing will come back for it later
                self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        self.acquire()
        try:
            lines, self._pending = self._pending, []
            self.stream.write("".join(lines))
            self.stream.flush()
        except Exception:  # noqa: BLE001
            # A broken log stream loses these lines, as logging's own handlers do (to
            # their handleError): it must not fail the calls, nor the loop's callback.
            pass
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        self._write_pending()  # keep the lines in the order they were logged
        super().emit(record)

    def close(self) -> None:
        self._write_pending()  # logging.shutdown closes every handler at exit
        super().close()


def rpc_via_logging(method: str, code: str, seconds: float, request_id: str, caller: str) -> None:
    fields = {
        "method": method,
        "code": code,
        "duration_ms": round(seconds * 1000, 3),
        "request_id": request_id,
        "caller": caller,
    }
    _rpc_log.info("rpc %s %s", method, code, extra={"fields": fields})


def rpc_line() -> RpcLine:
    """How to write the per-call line under the logging configuration of now."""
    handlers = logging.getLogger().handlers
    direct = (
        len(handlers) == 1
        and type(handlers[0]) is JsonLines
        and not handlers[0].filters
        and not _rpc_log.handlers
        and not _rpc_log.filters
        and _rpc_log.propagate
    )
    return handlers[0].rpc if direct else rpc_via_logging  # type: ignore[attr-defined]


def configure_logging(level: str) -> None:
    # Nothing here logs the caller's source line, thread or process: skip collecting them
    # for every record (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(level=level, handlers=[JsonLines(sys.stderr)], force=True)
