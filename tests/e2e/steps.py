"""Steps the black-box tests share: enroll and activate a user through grpcurl, with codes
computed from the wall clock the way an authenticator app does (the server's clock is real)."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.conftest import Grpcurl
from tests.helpers import totp_code

PERIOD = 30


def create(grpcurl: Grpcurl, address: str, user_id: str, seen_secrets: list[str]) -> dict[str, Any]:
    """CreateTotp for ``user_id``; the secret, URI and recovery codes go to ``seen_secrets``."""
    created = grpcurl.call(address, "CreateTotp", {"user_id": user_id})
    seen_secrets += [created["secret"], created["otpauth_uri"], *created["recovery_codes"]]
    return created


def activate(grpcurl: Grpcurl, address: str, created: dict[str, Any]) -> dict[str, Any]:
    """ActivateTotp with the code of the current time step."""
    request = {
        "user_id": created["user_id"],
        "totp_id": created["totp_id"],
        "code": totp_code(created["secret"], time.time()),
    }
    return grpcurl.call(address, "ActivateTotp", request)


def next_code(secret: str) -> str:
    """The code of the time step after the current one. The current step's code is used up
    by activation, and the server accepts codes up to one step early."""
    return totp_code(secret, time.time() + PERIOD)
