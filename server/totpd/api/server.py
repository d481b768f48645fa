"""The grpc.aio server: TotpService, health (tracking the store) and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..errors import StoreUnavailable
from ..service import TotpService
from ..v1 import totp_service_pb2 as pb
from ..v1 import totp_service_pb2_grpc as pb_grpc
from .servicer import TotpServicer

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TotpService"].full_name
HEALTH_PROBE_INTERVAL = 1.0


def create_server(
    service: TotpService,
    address: str,
    *,
    reflection_enabled: bool = True,
    health_servicer: health.aio.HealthServicer | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Build (but do not start) a server bound to ``address``; port 0 picks a free port."""
    server = grpc.aio.server()
    pb_grpc.add_TotpServiceServicer_to_server(TotpServicer(service), server)
    health_pb2_grpc.add_HealthServicer_to_server(
        health_servicer or health.aio.HealthServicer(), server
    )
    if reflection_enabled:
        names = (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port


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

    async def keep_probing(serving: bool) -> None:
        while True:
            await asyncio.sleep(interval)
            serving = await probe(serving)

    # The first answer is known before anyone can ask: no window of "unknown service".
    task = asyncio.create_task(keep_probing(await probe(None)))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await servicer.enter_graceful_shutdown()
