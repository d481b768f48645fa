"""A TLS-terminating TCP proxy in front of a Unix-socket Redis, for testing ``rediss://``
against the embedded redis-server (built without TLS).

It listens on 127.0.0.1 only, does the TLS handshake itself (so it can count successful
and failed handshakes), then copies bytes both ways to the Unix socket. It runs its own
event loop in a thread, so blocking tests (a totpd subprocess and a sync gRPC stub) and
async tests can use it alike. Everything is bounded: handshake and upstream-connect
timeouts, a cap on concurrent connections, and a bounded stop that aborts what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path
from types import TracebackType

_CHUNK = 64 * 1024


class TlsProxy:
    def __init__(
        self,
        upstream: Path,
        context: ssl.SSLContext,
        *,
        max_connections: int = 32,
        timeout: float = 5.0,
    ) -> None:
        self.upstream = upstream
        self.context = context
        self.port = 0
        self.accepted = 0  # TCP connections accepted
        self.handshakes = 0  # of which the TLS handshake succeeded
        self.tls_versions: set[str] = set()
        self.handshake_errors: list[str] = []  # why the others failed (the SSL error)
        self._max_connections = max_connections
        self._timeout = timeout
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> tuple[int, int, list[str]]:
        """(accepted, handshakes, handshake_errors), read consistently."""
        with self._lock:
            return self.accepted, self.handshakes, list(self.handshake_errors)

    # -- lifecycle (called from the test's thread) ----------------------------------------

    def start(self) -> TlsProxy:
        self._thread = threading.Thread(target=self._run, name="tls-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._timeout):
            raise RuntimeError("TLS proxy did not start")
        if self._error is not None:
            raise RuntimeError("TLS proxy failed to start") from self._error
        return self

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stopping.set)
        thread.join(self._timeout + 5)
        if thread.is_alive():
            raise RuntimeError("TLS proxy thread did not stop")
        self._thread = None

    def __enter__(self) -> TlsProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the proxy's own thread and event loop ---------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); the thread just ends
            self._error = exc
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        try:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stopping.wait()
        finally:
            server.close()
            await server.wait_closed()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _handle(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            with self._lock:
                self.accepted += 1
            if len(self._connections) > self._max_connections:
                return
            try:
                await client.start_tls(self.context, ssl_handshake_timeout=self._timeout)
            except (TimeoutError, ssl.SSLError, OSError) as exc:
                with self._lock:
                    self.handshake_errors.append(f"{type(exc).__name__}: {exc}")
                return
            ssl_object = client.get_extra_info("ssl_object")
            with self._lock:
                self.handshakes += 1
                self.tls_versions.add(ssl_object.version())
            upstream_reader, upstream = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.upstream)), self._timeout
            )
            pipes = [
                asyncio.create_task(_pipe(client_reader, upstream)),
                asyncio.create_task(_pipe(upstream_reader, client)),
            ]
            try:
                # Redis needs no half-close: when either side is done, so is the connection.
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except (TimeoutError, OSError):
            pass  # the client or Redis went away: nothing to forward any more
        finally:
            for writer in (upstream, client):
                if writer is not None:
                    writer.transport.abort()
            self._connections.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()


def server_context(
    cert_file: Path, key_file: Path, *, client_ca: bytes | None = None
) -> ssl.SSLContext:
    """The proxy's TLS: its certificate, and if ``client_ca`` is given, a client
    certificate signed by it is required (mutual TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca.decode())
    return context
