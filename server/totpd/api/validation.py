"""Checks of request fields, turning proto messages into validated domain commands.

Every problem found is reported at once, one ``FieldViolation`` per field, named as in the
proto. The messages say what is expected, never what was sent (it may be a secret).
"""

from __future__ import annotations

import re

from ..errors import FieldViolation, InvalidRequest
from ..model import Algorithm, CreateCommand, QrFormat, TotpParams
from ..v1 import totp_service_pb2 as pb

MAX_USER_ID_BYTES = 256
MAX_ISSUER_BYTES = 64
MAX_ACCOUNT_BYTES = 256
MAX_REQUEST_ID_BYTES = 64
MAX_RECOVERY_CODE_CHARS = 64
DEFAULT_EXPIRATION_MINUTES = 1440
MIN_EXPIRATION_MINUTES, MAX_EXPIRATION_MINUTES = 5, 1440
DEFAULT_QR_SIZE, MIN_QR_SIZE, MAX_QR_SIZE = 256, 64, 1024

_CODE = re.compile(r"(?:[0-9]{6}|[0-9]{8})\Z", re.ASCII)
_TOTP_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z", re.ASCII)

_ALGORITHMS = {
    pb.TOTP_ALGORITHM_UNSPECIFIED: Algorithm.SHA1,
    pb.TOTP_ALGORITHM_SHA1: Algorithm.SHA1,
    pb.TOTP_ALGORITHM_SHA256: Algorithm.SHA256,
    pb.TOTP_ALGORITHM_SHA512: Algorithm.SHA512,
}
_QR_FORMATS = {
    pb.QR_CODE_FORMAT_UNSPECIFIED: QrFormat.PNG,
    pb.QR_CODE_FORMAT_PNG: QrFormat.PNG,
    pb.QR_CODE_FORMAT_SVG: QrFormat.SVG,
}


class _Violations:
    def __init__(self) -> None:
        self.found: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.found.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self.found:
            raise InvalidRequest(self.found)

    def printable(self, field: str, value: str, max_len: int, *, required: bool) -> None:
        if not value:
            if required:
                self.add(field, "is required")
            return
        if len(value.encode()) > max_len:
            self.add(field, f"must be at most {max_len} bytes")
        elif not value.isprintable():
            self.add(field, "must be printable text without control characters")

    def user_id(self, value: str) -> None:
        self.printable("user_id", value, MAX_USER_ID_BYTES, required=True)

    def code(self, field: str, value: str) -> None:
        if not _CODE.match(value):
            self.add(field, "must be exactly 6 or 8 ASCII digits")

    def totp_id(self, value: str, *, required: bool) -> None:
        if value and not _TOTP_ID.match(value):
            self.add("totp_id", "must be a totp_id returned by CreateTotp")
        elif required and not value:
            self.add("totp_id", "is required")


def create_command(req: pb.CreateTotpRequest) -> CreateCommand:
    v = _Violations()
    v.user_id(req.user_id)
    v.printable("issuer", req.issuer, MAX_ISSUER_BYTES, required=False)
    v.printable("account_name", req.account_name, MAX_ACCOUNT_BYTES, required=False)
    # The Key URI label is "issuer:account": a colon inside either would split it wrongly.
    for field, value in (("issuer", req.issuer), ("account_name", req.account_name)):
        if ":" in value:
            v.add(field, "must not contain ':'")
    v.printable("request_id", req.request_id, MAX_REQUEST_ID_BYTES, required=False)
    account_name = req.account_name or req.user_id
    if not req.account_name and ":" in req.user_id:
        v.add("account_name", "is required when user_id contains ':'")

    minutes = req.expiration_minutes or DEFAULT_EXPIRATION_MINUTES
    if not MIN_EXPIRATION_MINUTES <= minutes <= MAX_EXPIRATION_MINUTES:
        v.add("expiration_minutes", "must be 0 (default 1440) or between 5 and 1440")
    algorithm = _ALGORITHMS.get(req.algorithm)
    if algorithm is None:
        v.add("algorithm", "must be SHA1, SHA256 or SHA512")
    digits = req.digits or 6
    if digits not in (6, 8):
        v.add("digits", "must be 0 (default 6), 6 or 8")
    period = 30
    if req.HasField("period"):
        if req.period.nanos or req.period.seconds not in (30, 60):
            v.add("period", "must be unset (default 30s), 30s or 60s")
        period = req.period.seconds
    qr_format = _QR_FORMATS.get(req.qr_code_format)
    if qr_format is None:
        v.add("qr_code_format", "must be PNG or SVG")
    qr_size = req.qr_code_size or DEFAULT_QR_SIZE
    if not MIN_QR_SIZE <= qr_size <= MAX_QR_SIZE:
        v.add("qr_code_size", f"must be 0 (default {DEFAULT_QR_SIZE}) or 64 to 1024")
    v.raise_if_any()
    assert algorithm is not None and qr_format is not None
    return CreateCommand(
        user_id=req.user_id,
        expiration_seconds=minutes * 60,
        issuer=req.issuer,
        account_name=account_name,
        request_id=req.request_id,
        params=TotpParams(algorithm, digits, period),
        qr_format=qr_format,
        qr_size=qr_size,
    )


def activate_request(req: pb.ActivateTotpRequest) -> None:
    v = _Violations()
    v.user_id(req.user_id)
    v.totp_id(req.totp_id, required=True)
    v.code("code", req.code)
    v.raise_if_any()


def verify_request(req: pb.VerifyTotpRequest) -> None:
    v = _Violations()
    v.user_id(req.user_id)
    v.code("code", req.code)
    v.raise_if_any()


def recovery_code_request(req: pb.UseRecoveryCodeRequest) -> None:
    v = _Violations()
    v.user_id(req.user_id)
    # Only presence and size: any other malformed code is a wrong code, and counts as one.
    if not req.recovery_code:
        v.add("recovery_code", "is required")
    elif len(req.recovery_code) > MAX_RECOVERY_CODE_CHARS:
        v.add("recovery_code", f"must be at most {MAX_RECOVERY_CODE_CHARS} characters")
    v.raise_if_any()


def user_request(req: pb.RegenerateRecoveryCodesRequest | pb.GetTotpRequest) -> None:
    v = _Violations()
    v.user_id(req.user_id)
    v.raise_if_any()


def delete_request(req: pb.DeleteTotpRequest) -> None:
    v = _Violations()
    v.user_id(req.user_id)
    v.totp_id(req.totp_id, required=False)
    v.raise_if_any()
