"""A steady load of every TotpService RPC from concurrent clients, with a ledger of what
each call answered and of every promise the server made.

Each client works through fresh users, one cycle per user: create, activate, verify (then
replay the accepted code), a wrong code, a recovery code (then replay it), regenerate the
recovery codes, GetTotp, and create-then-delete a pending enrollment of a second user.
A call that fails for infrastructure reasons (``INFRA``) ends the cycle when what follows
depends on it; any other unexpected answer, any UNKNOWN or INTERNAL, and any OK for a wrong
or replayed code is a violation.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from tests.faults.harness import INFRA, outcome
from tests.helpers import totp_code
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

CALL_TIMEOUT = 2.0
INVALID_CODE = ("INVALID_ARGUMENT", "INVALID_CODE")
STEP = 30


@dataclass
class Ledger:
    activated: dict[str, str] = field(default_factory=dict)  # user -> totp_id answered OK
    accepted_codes: set[tuple[str, str]] = field(default_factory=set)  # (user, code)
    answers: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    infra: set[tuple[str, str]] = field(default_factory=lambda: set(INFRA))

    def count(self, rpc: str, code: str) -> int:
        return sum(n for (r, c, _), n in self.answers.items() if r == rpc and c == code)


def wrong_code(secret: str, now: float) -> str:
    near = {totp_code(secret, now + k * STEP) for k in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in near)


class Client:
    def __init__(self, name: str, stub: pb_grpc.TotpServiceStub, ledger: Ledger) -> None:
        self.name = name
        self.stub = stub
        self.ledger = ledger

    async def call(
        self,
        rpc: str,
        request: Any,
        *,
        ok: bool = True,
        expected: frozenset[tuple[str, str]] = frozenset(),
    ) -> Any | None:
        """The reply, or None if the call failed; records the answer and any violation."""
        method: Callable[..., Awaitable[Any]] = getattr(self.stub, rpc)
        try:
            reply = await method(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            got = outcome(error)
            self.ledger.answers[(rpc, *got)] += 1
            if got not in self.ledger.infra and got not in expected:
                self.ledger.violations.append(f"{self.name} {rpc}: {got} {error.details()}")
            return None
        self.ledger.answers[(rpc, "OK", "")] += 1
        if not ok:
            self.ledger.violations.append(f"{self.name} {rpc}: OK where it must fail")
        return reply

    async def verify(self, user: str, code: str) -> bool:
        """VerifyTotp of a right code; an OK for a code already accepted is a replay."""
        reply = await self.call("VerifyTotp", pb.VerifyTotpRequest(user_id=user, code=code))
        if reply is None:
            return False
        if (user, code) in self.ledger.accepted_codes:
            self.ledger.violations.append(f"{self.name}: replayed code accepted for {user}")
        self.ledger.accepted_codes.add((user, code))
        return True

    async def cycle(self, n: int) -> None:
        user = f"{self.name}-{n}"
        created = await self.call("CreateTotp", pb.CreateTotpRequest(user_id=user, qr_code_size=64))
        if created is None:
            return
        code = totp_code(created.secret, time.time())
        activate = pb.ActivateTotpRequest(user_id=user, totp_id=created.totp_id, code=code)
        if await self.call("ActivateTotp", activate) is None:
            return  # may or may not have happened: promises nothing
        self.ledger.activated[user] = created.totp_id

        code = totp_code(created.secret, time.time() + STEP)
        if await self.verify(user, code):
            replay = pb.VerifyTotpRequest(user_id=user, code=code)
            await self.call("VerifyTotp", replay, ok=False, expected=frozenset({INVALID_CODE}))
        wrong = pb.VerifyTotpRequest(user_id=user, code=wrong_code(created.secret, time.time()))
        await self.call("VerifyTotp", wrong, ok=False, expected=frozenset({INVALID_CODE}))

        recovery = pb.UseRecoveryCodeRequest(user_id=user, recovery_code=created.recovery_codes[0])
        if await self.call("UseRecoveryCode", recovery) is not None:
            await self.call(
                "UseRecoveryCode", recovery, ok=False, expected=frozenset({INVALID_CODE})
            )
        await self.call("RegenerateRecoveryCodes", pb.RegenerateRecoveryCodesRequest(user_id=user))
        status = await self.call("GetTotp", pb.GetTotpRequest(user_id=user))
        if status is not None and status.active_totp.totp_id != created.totp_id:
            self.ledger.violations.append(f"{self.name}: GetTotp({user}) lost its factor")

        other = f"{user}-d"
        pending = await self.call(
            "CreateTotp", pb.CreateTotpRequest(user_id=other, qr_code_size=64)
        )
        if pending is not None:
            delete = pb.DeleteTotpRequest(user_id=other, totp_id=pending.totp_id)
            reply = await self.call("DeleteTotp", delete)
            if reply is not None and not reply.deleted:
                self.ledger.violations.append(f"{self.name}: DeleteTotp({other}) deleted nothing")

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            await self.cycle(n)
            n += 1
