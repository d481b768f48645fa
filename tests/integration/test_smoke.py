from __future__ import annotations

from totpd.v1 import totp_service_pb2 as pb

from tests.conftest import Totpd
from tests.helpers import totp_code


async def test_create_then_activate(totpd: Totpd) -> None:
    created = await totpd.stub.CreateTotp(pb.CreateTotpRequest(user_id="alice"))
    code = totp_code(created.secret, totpd.clock.now)
    activated = await totpd.stub.ActivateTotp(
        pb.ActivateTotpRequest(user_id="alice", totp_id=created.totp_id, code=code)
    )
    assert activated.totp.state == pb.TOTP_STATE_ACTIVE
