"""One well-formed request per TotpService RPC, for tests that call every RPC."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

USER = "security-user"


def requests(user_id: str = USER) -> dict[str, Any]:
    return {
        "CreateTotp": pb.CreateTotpRequest(user_id=user_id, qr_code_size=64),
        "ActivateTotp": pb.ActivateTotpRequest(
            user_id=user_id, totp_id="totp-0123456789abcdef", code="123456"
        ),
        "VerifyTotp": pb.VerifyTotpRequest(user_id=user_id, code="123456"),
        "UseRecoveryCode": pb.UseRecoveryCodeRequest(user_id=user_id, recovery_code="abcd-efgh"),
        "RegenerateRecoveryCodes": pb.RegenerateRecoveryCodesRequest(user_id=user_id),
        "GetTotp": pb.GetTotpRequest(user_id=user_id),
        "DeleteTotp": pb.DeleteTotpRequest(user_id=user_id),
    }


def method(stub: pb_grpc.TotpServiceStub, rpc: str) -> Callable[..., Awaitable[Any]]:
    return getattr(stub, rpc)  # type: ignore[no-any-return]
