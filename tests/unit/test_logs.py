"""The JSON log lines, and the per-call line's direct path (totpd.logs)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator

import pytest

from totpd import logs

NOW = 1_795_000_000.987654  # a fixed clock, so two lines of one call can be compared


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingStream]:
    """configure_logging's set-up, on a stream of our own; restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = CountingStream()
    monkeypatch.setattr(logs.sys, "stderr", out)
    monkeypatch.setattr(time, "time", lambda: NOW)  # LogRecord and the direct path
    logs.configure_logging("INFO")
    yield out
    root.handlers[:], root.level = saved[0], saved[1]


def _direct() -> logs.RpcLine:
    """The direct path, with pytest's own log capture handlers (which it adds to the root
    logger for each test phase) out of the way: they would rightly make it log through
    logging instead."""
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logs.JsonLines)]
    line = logs.rpc_line()
    assert line != logs.rpc_via_logging
    return line


CALLS = [
    ("VerifyTotp", "OK", 0.000812345, "9f2c4e1ab07d3356", ""),
    ("CreateTotp", "INVALID_ARGUMENT", 1.5, "req-1.a:b_c", "web"),
    ("ActivateTotp", "UNAVAILABLE", 0.0, "x", 'a "quoted" \\ caller\n'),
    ("DeleteTotp", "NOT_FOUND", 12.000049, "r", "caller-é-✓"),
]


@pytest.mark.parametrize("call", CALLS, ids=[c[0] for c in CALLS])
def test_the_direct_line_is_the_logging_line_character_for_character(
    stream: CountingStream, call: tuple[str, str, float, str, str]
) -> None:
    logs.rpc_via_logging(*call)
    through_logging = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    _direct()(*call)  # no event loop here: written at once
    assert stream.getvalue() == through_logging
    entry = json.loads(through_logging)
    assert entry["caller"] == call[4]
    assert entry["time"].endswith(",987")  # milliseconds truncated, as LogRecord does


def test_lines_of_one_loop_turn_go_out_in_one_write_after_it(stream: CountingStream) -> None:
    line = _direct()

    async def calls() -> tuple[str, int]:
        for n in range(5):
            line("VerifyTotp", "OK", 0.001, f"r{n}", "")
        seen_during_the_turn = stream.getvalue(), stream.writes
        await asyncio.sleep(0)  # let the loop turn end
        return seen_during_the_turn

    during, writes_during = asyncio.run(calls())
    assert (during, writes_during) == ("", 0)
    assert stream.writes == 1
    ids = [json.loads(text)["request_id"] for text in stream.getvalue().splitlines()]
    assert ids == ["r0", "r1", "r2", "r3", "r4"]


def test_other_records_keep_their_place_among_the_call_lines(stream: CountingStream) -> None:
    line = _direct()

    async def calls() -> None:
        line("VerifyTotp", "OK", 0.001, "first", "")
        logging.getLogger("totpd").warning("in between")
        line("VerifyTotp", "OK", 0.001, "second", "")
        await asyncio.sleep(0)

    asyncio.run(calls())
    entries = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert [e.get("request_id", e["message"]) for e in entries] == [
        "first",
        "in between",
        "second",
    ]


def test_pending_lines_are_written_when_logging_shuts_down(stream: CountingStream) -> None:
    line = _direct()
    handler = logging.getLogger().handlers[0]

    async def call_then_close() -> None:
        line("VerifyTotp", "OK", 0.001, "last", "")
        handler.close()  # what logging.shutdown does at exit, before the loop turn ends

    asyncio.run(call_then_close())
    assert json.loads(stream.getvalue())["request_id"] == "last"


def test_warning_level_turns_the_call_line_off(stream: CountingStream) -> None:
    logs.configure_logging("WARNING")
    _direct()("VerifyTotp", "OK", 0.001, "r", "")
    assert stream.getvalue() == ""


def test_any_other_logging_configuration_gets_the_logging_path(stream: CountingStream) -> None:
    _direct()
    extra = logging.NullHandler()
    logging.getLogger().addHandler(extra)
    try:
        assert logs.rpc_line() is logs.rpc_via_logging
    finally:
        logging.getLogger().removeHandler(extra)
    rpc_logger = logging.getLogger(logs.RPC_LOGGER)
    rpc_logger.addHandler(extra)
    try:
        assert logs.rpc_line() is logs.rpc_via_logging
    finally:
        rpc_logger.removeHandler(extra)
    assert logs.rpc_line() is not logs.rpc_via_logging


def test_a_broken_stream_loses_lines_but_raises_nothing(stream: CountingStream) -> None:
    line = _direct()
    stream.close()  # writes now raise ValueError

    async def call() -> None:
        line("VerifyTotp", "OK", 0.001, "r", "")
        await asyncio.sleep(0)

    asyncio.run(call())  # the loop's callback swallowed the error
    line("VerifyTotp", "OK", 0.001, "r", "")  # and so does a write outside a loop
