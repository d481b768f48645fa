"""The grpc.aio server: TotpService, health (tracking the store) and reflection; TLS or
mutual TLS, the auth interceptor and the transport limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..callers import Callers
from ..errors import StoreUnavailable
from ..service import TotpService
from ..v1 import totp_service_pb2 as pb
from ..v1 import totp_service_pb2_grpc as pb_grpc
from .auth import AuthInterceptor
from .decoding import DecodingInterceptor
from .observability import CallerProbe, ObservingInterceptor, RpcObserver, RpcStarted
from .protovalidation import rules_check
from .servicer import TotpServicer

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TotpService"].full_name
RPC_NAMES = tuple(pb.DESCRIPTOR.services_by_name["TotpService"].methods_by_name)
HEALTH_PROBE_INTERVAL = 1.0


@dataclass(frozen=True)
class ServerTls:
    """PEM bytes of the server's certificate chain and key; with ``client_ca``, every
    client must present a certificate signed by it (mutual TLS)."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(frozen=True)
class TransportLimits:
    """What one connection or request may cost (OWASP gRPC cheat sheet: limit sizes,
    streams and connection lifetimes). The largest valid request is well under 1 KiB."""

    max_receive_bytes: int = 8 * 1024
    max_metadata_bytes: int = 8 * 1024
    max_concurrent_streams: int = 100  # per connection (RFC 9113 advises at least 100)
    max_concurrent_rpcs: int = 1024  # per server; beyond: RESOURCE_EXHAUSTED
    keepalive_seconds: int = 60  # the server pings idle connections this often
    keepalive_timeout_seconds: int = 20
    min_client_ping_interval_seconds: int = 30  # faster pings are strikes...
    max_ping_strikes: int = 2  # ...and more than this many close the connection
    max_connection_idle_seconds: int = 300
    max_connection_age_seconds: int = 1800  # then clients reconnect (and re-handshake)
    max_connection_age_grace_seconds: int = 30

    def options(self) -> list[tuple[str, int]]:
        ms = 1000
        return [
            ("grpc.max_receive_message_length", self.max_receive_bytes),
            ("grpc.max_metadata_size", self.max_metadata_bytes),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            ("grpc.keepalive_time_ms", self.keepalive_seconds * ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_seconds * ms),
            ("grpc.keepalive_permit_without_calls", 0),
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                self.min_client_ping_interval_seconds * ms,
            ),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
            ("grpc.max_connection_idle_ms", self.max_connection_idle_seconds * ms),
            ("grpc.max_connection_age_ms", self.max_connection_age_seconds * ms),
            ("grpc.max_connection_age_grace_ms", self.max_connection_age_grace_seconds * ms),
        ]


def create_server(
    service: TotpService,
    address: str,
    *,
    reflection_enabled: bool = True,
    health_servicer: health.aio.HealthServicer | None = None,
    tls: ServerTls | None = None,
    callers: Callers | None = None,
    limits: TransportLimits | None = None,
    observe_rpc: RpcObserver | None = None,
    rpc_started: RpcStarted | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Build (but do not start) a server bound to ``address``; port 0 picks a free port.

    With ``callers``, every TotpService call is authenticated and authorized (see
    ``auth``); without, anyone who reaches the port may call anything (development).
    Every TotpService call is logged, and sampled into ``observe_rpc`` if given (and
    announced to ``rpc_started`` when it starts).
    """
    limits = limits or TransportLimits()
    # Outermost first: observe (to see every call's final status, rejected ones too),
    # then authenticate before even parsing the request.
    interceptors: list[grpc.aio.ServerInterceptor] = [
        ObservingInterceptor(SERVICE_NAME, observe_rpc, rpc_started)
    ]
    if callers is not None:
        interceptors.append(AuthInterceptor(callers, SERVICE_NAME))
        interceptors.append(CallerProbe(SERVICE_NAME))
    interceptors.append(DecodingInterceptor(SERVICE_NAME, rules_check()))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=limits.options(),
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    pb_grpc.add_TotpServiceServicer_to_server(TotpServicer(service, tls is not None), server)
    health_pb2_grpc.add_HealthServicer_to_server(
        health_servicer or DrainingHealthServicer(), server
    )
    if reflection_enabled:
        names = (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, tls.credentials())
    except RuntimeError as exc:  # grpcio raises this when the port is taken
        raise OSError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port


class DrainingHealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    """grpc's health servicer, except that at shutdown each Watch stream ends once it has
    sent NOT_SERVING: an open Watch (gRPC client-side health checking keeps one) would
    otherwise hold ``server.stop(grace)`` for the whole grace period."""

    def __init__(self) -> None:
        super().__init__()
        self._draining = asyncio.Event()

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        draining = self._draining
        sent: list[int] = []
        drained = asyncio.Event()

        class _Context:  # the call's context, noting what the stream has sent
            def __getattr__(self, name: str) -> Any:
                return getattr(context, name)

            async def write(self, message: health_pb2.HealthCheckResponse) -> None:
                await context.write(message)
                sent.append(message.status)
                if draining.is_set() and message.status == _NOT_SERVING:
                    drained.set()

        async def until_drained() -> None:
            await draining.wait()
            # A service that shutdown does not mark (unknown) has nothing more to say.
            if not sent or sent[-1] not in (_NOT_SERVING, _SERVICE_UNKNOWN):
                await drained.wait()

        watching = asyncio.ensure_future(super().Watch(request, _Context()))
        ending = asyncio.ensure_future(until_drained())
        try:
            done, _ = await asyncio.wait({watching, ending}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watching, ending):
                task.cancel()
            await asyncio.gather(watching, ending, return_exceptions=True)
        if watching in done:
            watching.result()

    async def enter_graceful_shutdown(self) -> None:
        await super().enter_graceful_shutdown()  # NOT_SERVING to every watcher
        self._draining.set()


_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


async def _set_health(servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", SERVICE_NAME):
        await servicer.set(name, status)


@contextlib.asynccontextmanager
async def health_tracking(
    servicer: health.aio.HealthServicer,
    ping: Callable[[], Awaitable[bool]],
    interval: float = HEALTH_PROBE_INTERVAL,
) -> AsyncIterator[None]:
    """Keep health NOT_SERVING while the store does not answer, SERVING while it does."""

    async def probe(serving: bool | None) -> bool:
        try:
            now_serving = await ping()
        except StoreUnavailable:
            now_serving = False
        if now_serving != serving:
            state = "reachable: SERVING" if now_serving else "unreachable: NOT_SERVING"
            log.info("store %s", state)
            await _set_health(servicer, now_serving)
        return now_serving

    stopping = asyncio.Event()

    async def keep_probing(serving: bool) -> None:
        # Checks the flag as well as being cancelled: on Python 3.11 a cancellation that
        # lands inside redis-py's asyncio.wait_for can be swallowed, and the loop would
        # then run (and the shutdown wait for it) forever.
        while not stopping.is_set():
            await asyncio.sleep(interval)
            if not stopping.is_set():
                serving = await probe(serving)

    # The first answer is known before anyone can ask: no window of "unknown service".
    task = asyncio.create_task(keep_probing(await probe(None)))
    try:
        yield
    finally:
        stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await servicer.enter_graceful_shutdown()
