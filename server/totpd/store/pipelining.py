"""Auto-pipelining: the commands that concurrent calls send in one turn of the event loop
go to Redis together, in one write on one pooled connection.

Why: under load most of a VerifyTotp's Redis cost is not Redis but redis-py's cost per
command (about 0.1 ms of client CPU: a pool checkout and release under a lock, a timeout
task for the write, a wake-up for the read), and each RPC needs one to three commands.
In a batch, a command costs only its encoding and its reply's parsing; the rest is paid
once per batch (and the batch's write and replies share one deadline).
``docs/performance.md`` has the before/after figures. This is what ioredis calls
auto-pipelining; redis-py has no such mode, so this client adds it for the commands
of ``BATCHED``.

What a caller sees is what it would see with a command of its own: its own reply, or its
own error reply (a script's NOSCRIPT too, so redis-py's ``Script`` reloads and retries as
usual). Redis runs a batch's commands in order but not atomically together, which nothing
here needs: every decision is one script. When the connection fails, every command of
the batch that has no reply yet gets that error, and none is sent again: a command that
was sent may have run (a resent code check would find its own step used and answer
"replayed"). A caller that gives up (a cancelled RPC) leaves the batch alone, so no
connection is ever returned to the pool with replies still unread on it.

Only single-server and Sentinel clients pipeline this way; the cluster client sends each
command by itself (its commands go to different nodes).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import redis.asyncio as redis
from hiredis import pack_command
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# The commands the store sends on its request path: plain request/reply commands that
# neither block nor change the connection's state. Anything else goes the usual way.
BATCHED = frozenset({"EVALSHA", "HGETALL", "HGET", "HMGET", "HLEN", "XADD", "ZRANGEBYSCORE"})
# At most this many commands go in one batch...
MAX_BATCH = 256
# ...and at most this many senders take from the queue, each on a connection of its own,
# one batch at a time. While a batch is on its way the commands sent meanwhile queue up and
# leave together when it comes back: under load batches grow by themselves (a group
# commit; with 2 senders they stayed at 1-3 commands and saved nothing), and an idle
# server sends at once. One Redis runs one command at a time anyway.
MAX_IN_FLIGHT = 1

_Queued = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]


class PipeliningRedis(redis.Redis):
    """A ``redis.asyncio.Redis`` that auto-pipelines the commands of ``BATCHED``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: list[_Queued] = []
        self._senders: set[asyncio.Task[None]] = set()  # those still taking from the queue

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[0] not in BATCHED or self.single_connection_client:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, options, reply))
        if len(self._senders) < MAX_IN_FLIGHT:
            # Its first step runs after the callbacks already due in this turn of the
            # loop, so the commands they send join the same batch.
            self._senders.add(asyncio.create_task(self._send_queue()))
        return await reply

    async def _send_queue(self) -> None:
        """Send the queue batch after batch until it is empty."""
        try:
            while self._queue:
                await self._send_on_one_connection()
        finally:
            # Gone from the set in the same step that saw the queue empty (no await in
            # between): a command queued after that starts a sender of its own.
            self._senders.discard(asyncio.current_task())

    async def _send_on_one_connection(self) -> None:
        pool = self.connection_pool
        try:
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        except Exception as exc:  # Redis down, pool exhausted: nothing was sent
            queued, self._queue = self._queue, []
            _fail(queued, exc)
            return
        try:
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                await self._send(connection, batch)
        finally:
            await pool.release(connection)

    async def _send(self, connection: Any, batch: list[_Queued]) -> None:
        answered = 0
        try:
            if not connection.is_connected:  # dropped by a failed batch before this one
                await connection.connect_check_health(check_health=False)
            # One deadline for writing the batch and reading its replies. redis-py's
            # send_packed_command would write under asyncio.wait_for (a task and a timer
            # of its own) and read_response under a timer per reply: that set-up costs
            # more than the commands, since under load a batch holds only 1-3 of them.
            async with asyncio.timeout(connection.socket_timeout):
                # hiredis packs in C (redis-py's asyncio connection packs in Python);
                # BATCHED names have no spaces, which redis-py would split into arguments.
                connection._writer.write(b"".join([pack_command(a) for a, _, _ in batch]))
                await connection._writer.drain()
                for args, options, reply in batch:
                    try:
                        value = await self._reply(connection, args[0], options)
                    except ResponseError as exc:  # this command's error reply: go on
                        _settle(reply, exc)
                    else:
                        _settle(reply, value)
                    answered += 1
        except BaseException as exc:
            # The connection is in an unknown state (a reply may be half read): drop it;
            # the next batch reconnects.
            await connection.disconnect(nowait=True)
            if isinstance(exc, TimeoutError):
                exc = RedisTimeoutError("Timeout talking to Redis")
            elif isinstance(exc, OSError):  # from the write (reads raise redis' own)
                exc = RedisConnectionError(f"Error while writing to Redis: {exc}")
            _fail(batch[answered:], exc)
            if not isinstance(exc, Exception):
                raise

    async def _reply(self, connection: Any, command: str, options: dict[str, Any]) -> Any:
        """The next reply, as ``Redis.parse_response`` makes it (minus the per-read
        timeout); the callbacks of BATCHED commands are plain functions."""
        try:
            response = await connection.read_response(
                disable_decoding=NEVER_DECODE in options, timeout=math.inf
            )
        except ResponseError:
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise
        callback = self.response_callbacks.get(command)
        if callback is None:
            return response
        for option in (NEVER_DECODE, EMPTY_RESPONSE, "keys"):
            options.pop(option, None)
        return callback(response, **options)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Let the batches already sent finish (their callers are waiting) before closing."""
        if self._senders:
            await asyncio.gather(*self._senders, return_exceptions=True)
        await super().aclose(close_connection_pool)


def _settle(reply: asyncio.Future[Any], value: Any) -> None:
    if reply.done():  # its caller was cancelled
        return
    if isinstance(value, BaseException):
        reply.set_exception(value)
    else:
        reply.set_result(value)


def _fail(batch: list[_Queued], exc: BaseException) -> None:
    for _, _, reply in batch:
        if isinstance(exc, asyncio.CancelledError):
            reply.cancel()
        else:
            _settle(reply, exc)
