"""Auto-pipelining: the commands that concurrent calls send in one turn of the event loop
go to Redis together, in one write on one shared connection.

Why: under load most of a VerifyTotp's Redis cost is not Redis but the client's cost per
command: redis-py checks a connection out of its pool and back in under a lock, runs a
timeout around the write, and wakes a task per reply through a ``StreamReader``. Here a
command costs its encoding, a future and its reply's parsing; the rest is paid once per
loop turn. ``docs/performance.md`` has the before/after figures. This is what ioredis
calls auto-pipelining; redis-py has no such mode, so this client adds it for the commands
of ``BATCHED``.

How: those commands share one connection (a ``_Pipe``) outside the pool. redis-py opens it,
so AUTH, SELECT, TLS and Sentinel's primary lookup stay redis-py's; then the pipe reads and
writes its socket itself, as an asyncio ``Protocol``: a loop turn's commands leave in one
write, and each reply resolves its caller's future straight from the socket's data
callback, in order. No task, pool checkout or timer per command: one timer per connection
watches that replies keep coming.

What a caller sees is what it would see with a command of its own: its own reply, or its
own error reply (a script's NOSCRIPT too, so redis-py's ``Script`` reloads and retries as
usual). Redis runs the commands in order but not atomically together, which nothing here
needs: every decision is one script. When the connection fails, or no reply comes for the
socket timeout, every command still owed a reply gets that error and none is sent again:
a command that was sent may have run (a resent code check would find its own step used
and answer "replayed"). The next command opens a new connection. A caller that gives up (a
cancelled RPC) leaves the connection alone: its reply is read and dropped.

Only single-server and Sentinel clients pipeline this way, and only when they do not
decode replies (totpd's do not); the cluster client sends each command by itself (its
commands go to different nodes).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any

import hiredis
import redis.asyncio as redis
from redis._parsers import _AsyncHiredisParser
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# The commands the store sends on its request path: plain request/reply commands that
# neither block nor change the connection's state. Anything else goes the usual way.
# SCRIPT LOAD too: after a Redis restart every call in flight reloads its script at once,
# which through the pool could take more connections than it has.
BATCHED = frozenset(
    {"EVALSHA", "HGETALL", "HGET", "HMGET", "HLEN", "XADD", "ZRANGEBYSCORE", "SCRIPT LOAD"}
)

# A reply owed: the caller's future, the command's name and its options (for the reply
# callback redis-py would run).
_Owed = tuple["asyncio.Future[Any]", str, dict[str, Any]]
_NOT_ENOUGH_DATA = object()


class PipeliningRedis(redis.Redis):
    """A ``redis.asyncio.Redis`` that auto-pipelines the commands of ``BATCHED``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pipe: _Pipe | None = None
        self._opening: asyncio.Future[_Pipe] | None = None
        decodes = self.connection_pool.connection_kwargs.get("decode_responses", False)
        self._pipelines = not self.single_connection_client and not decodes

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[0] not in BATCHED or not self._pipelines:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        pipe = self._pipe
        if pipe is None or pipe.closed:
            pipe = await self._open_pipe()
        return await pipe.send(args, options)

    async def _open_pipe(self) -> _Pipe:
        # One connect for every caller that finds no open pipe; shielded, so that a caller
        # cancelled meanwhile does not cancel it for the others.
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._connect_pipe())
        return await asyncio.shield(self._opening)

    async def _connect_pipe(self) -> _Pipe:
        # Outside the pool (make_connection counts nothing): the pipe holds it for good.
        connection = self.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        await connection.connect()  # with redis-py's retry for connecting
        self._pipe = _Pipe(connection, self.response_callbacks)
        return self._pipe

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Let the commands already sent finish (their callers are waiting), then close."""
        if self._pipe is not None:
            await self._pipe.close()
        await super().aclose(close_connection_pool)


class _Pipe(asyncio.Protocol):
    """One connection carrying the batched commands of every caller, in order."""

    def __init__(self, connection: Any, callbacks: Mapping[Any, Any]) -> None:
        self._loop = asyncio.get_running_loop()
        self._callbacks = callbacks
        self._timeout: float | None = connection.socket_timeout
        # Kept, not just its transport: a StreamWriter that is collected closes it. The
        # handshake's replies have all been read, so nothing is left in its reader.
        self._writer = connection._writer
        self._transport: asyncio.Transport = self._writer.transport
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse,
            replyError=_AsyncHiredisParser.parse_error,
            notEnoughData=_NOT_ENOUGH_DATA,
        )
        self._unsent: list[bytes] = []
        self._unsent_owed: list[_Owed] = []
        self._owed: deque[_Owed] = deque()
        self._progress = self._loop.time()  # of the last reply, or the first owed since
        self._watch: asyncio.TimerHandle | None = None
        # redis-py pings a pooled connection idle this long before using it again; this one
        # pings itself, so that a peer gone silently (or a NAT that forgot the connection)
        # costs a ping, not the calls that would have been sent next.
        self._keepalive: float = connection.health_check_interval
        self._pinger: asyncio.TimerHandle | None = None
        if self._keepalive > 0:
            self._pinger = self._loop.call_later(self._keepalive, self._ping_if_idle)
        self.closed = False
        # redis-py's Connection is done with: from here on only this protocol uses the
        # socket (the Connection would read through the StreamReader it no longer feeds).
        connection._reader = connection._writer = None
        self._transport.set_protocol(self)

    def send(self, args: tuple[Any, ...], options: dict[str, Any]) -> asyncio.Future[Any]:
        reply: asyncio.Future[Any] = self._loop.create_future()
        if not self._unsent:
            # After the callbacks already due in this turn: the commands they send join.
            self._loop.call_soon(self._flush)
        # hiredis packs in C (redis-py's asyncio connection packs in Python). A name with
        # a space is two words on the wire, as redis-py sends it.
        words = (*args[0].split(), *args[1:]) if " " in args[0] else args
        self._unsent.append(hiredis.pack_command(words))
        self._unsent_owed.append((reply, args[0], options))
        return reply

    def _flush(self) -> None:
        data = b"".join(self._unsent)
        owed = self._unsent_owed
        self._unsent, self._unsent_owed = [], []
        if self.closed:  # failed since they were queued; nothing was sent
            _fail(owed, RedisConnectionError("Connection to Redis closed"))
            return
        if not self._owed:
            self._progress = self._loop.time()
            if self._watch is None and self._timeout is not None:
                self._watch = self._loop.call_at(self._progress + self._timeout, self._check)
        self._owed.extend(owed)
        self._transport.write(data)

    def _check(self) -> None:
        """No reply for the socket timeout while some are owed: the connection is given
        up (a late reply must not reach the wrong caller)."""
        self._watch = None
        if not self._owed or self._timeout is None:
            return
        due = self._progress + self._timeout
        if self._loop.time() >= due:
            self._give_up(RedisTimeoutError("Timeout reading from Redis"))
        else:
            self._watch = self._loop.call_at(due, self._check)

    def _ping_if_idle(self) -> None:
        idle = self._loop.time() - self._progress
        if idle >= self._keepalive and not self._owed and not self._unsent:
            # Its reply matters to no one; a failure is the whole pipe's anyway.
            self.send(("PING",), {}).add_done_callback(_ignore)
            idle = 0.0
        self._pinger = self._loop.call_later(self._keepalive - idle, self._ping_if_idle)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        owed = self._owed
        close_after = False
        while True:
            try:
                response = reader.gets()
            except InvalidResponse as exc:
                self._give_up(RedisConnectionError(f"Protocol error: {exc}"))
                return
            if response is _NOT_ENOUGH_DATA:
                break
            if not owed:
                self._give_up(RedisConnectionError("Redis sent a reply nobody asked for"))
                return
            reply, command, options = owed.popleft()
            if isinstance(response, ReadOnlyError | RedisConnectionError):
                # A replica now (after a failover), or not serving: reconnect, which asks
                # Sentinel for the current primary.
                close_after = True
            if not reply.done():  # else its caller was cancelled: dropped
                self._settle(reply, response, command, options)
        self._progress = self._loop.time()
        if close_after:
            self._give_up(RedisConnectionError("Redis is not the primary or not serving"))

    def _settle(
        self, reply: asyncio.Future[Any], response: Any, command: str, options: dict[str, Any]
    ) -> None:
        """As ``Redis.parse_response`` makes a reply (its callbacks for BATCHED commands
        are plain functions)."""
        if isinstance(response, ResponseError):
            if EMPTY_RESPONSE in options:
                reply.set_result(options[EMPTY_RESPONSE])
            else:
                reply.set_exception(response)
            return
        if type(response) is list and response and isinstance(response[0], RedisConnectionError):
            reply.set_exception(response[0])
            return
        callback = self._callbacks.get(command)
        if callback is None:
            reply.set_result(response)
            return
        for option in (NEVER_DECODE, EMPTY_RESPONSE, "keys"):
            options.pop(option, None)
        try:
            reply.set_result(callback(response, **options))
        except Exception as exc:
            reply.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._give_up(RedisConnectionError(f"Connection to Redis lost{reason}"))

    def _give_up(self, error: Exception) -> None:
        """Close for good: every command owed a reply gets ``error``; the ones not yet
        written get it too when their turn comes (``_flush``)."""
        self.closed = True
        self._stop_timers()
        owed, self._owed = list(self._owed), deque()
        _fail(owed, error)
        self._transport.abort()  # no late reply must be read, nor any write sent

    async def close(self) -> None:
        """Wait for the replies owed (each comes, or the watch gives up), then close."""
        owed = [reply for reply, _, _ in (*self._unsent_owed, *self._owed)]
        if owed:
            await asyncio.wait(owed)
        self.closed = True
        self._stop_timers()
        self._transport.close()

    def _stop_timers(self) -> None:
        for timer in (self._watch, self._pinger):
            if timer is not None:
                timer.cancel()
        self._watch = self._pinger = None


def _ignore(reply: asyncio.Future[Any]) -> None:
    if not reply.cancelled():
        reply.exception()  # retrieved: no "exception never retrieved" warning


def _fail(owed: list[_Owed], error: Exception) -> None:
    for reply, _, _ in owed:
        if not reply.done():
            reply.set_exception(error)
