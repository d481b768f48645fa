"""TOTPD_WORKERS=2: two server processes on one port, one embedded Redis, one exit."""

from __future__ import annotations

import time

import grpc
import pytest

from tests.e2e.conftest import StartServer
from tests.helpers import totp_code
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e


def test_two_workers_share_one_port_and_one_store(start_server: StartServer) -> None:
    server = start_server(WORKERS="2")
    # The parent reserved the port, so both workers announce the same address.
    server.wait_for_lines(f"listening on {server.address}", count=2)

    # Separate channels (separate connections) are spread over the workers by the
    # kernel; whichever answers, the state is the shared Redis.
    channels = [grpc.insecure_channel(server.address) for _ in range(8)]
    try:
        stubs = [pb_grpc.TotpServiceStub(c) for c in channels]
        created = stubs[0].CreateTotp(pb.CreateTotpRequest(user_id="w"), timeout=10)
        code = totp_code(created.secret, time.time())
        stubs[1].ActivateTotp(
            pb.ActivateTotpRequest(user_id="w", totp_id=created.totp_id, code=code), timeout=10
        )
        states = {
            s.GetTotp(pb.GetTotpRequest(user_id="w"), timeout=10).active_totp.totp_id for s in stubs
        }
        assert states == {created.totp_id}
    finally:
        for channel in channels:
            channel.close()
