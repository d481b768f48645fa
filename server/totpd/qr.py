"""QR code images of otpauth URIs (PNG or SVG).

Rendering is CPU-bound pure Python (mask selection dominates: 15-40 ms an image), so the
service runs it in a worker thread to keep the event loop answering other RPCs meanwhile.
"""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from qrcode.image.pil import PilImage
from qrcode.image.svg import SvgPathFillImage

from .model import QrCode, QrFormat

BORDER = 4  # the quiet zone ISO/IEC 18004 asks for, in modules


class _PixelSvgImage(SvgPathFillImage):
    """An SVG on a white background (scannable on a dark page too), sized in CSS pixels
    like the PNG; qrcode's own unit is the millimetre."""

    def units(self, pixels: int | Decimal, text: bool = True) -> Any:
        return str(int(pixels)) if text else Decimal(pixels)


def render(data: str, fmt: QrFormat, size: int) -> QrCode:
    """A QR code of ``data`` at most ``size`` pixels wide, with whole pixels per module
    (one pixel per module, and so wider, if it has more modules than that)."""
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=BORDER, box_size=1)
    qr.add_data(data)
    qr.make(fit=True)  # smallest version that fits, best of the eight masks
    qr.box_size = max(1, size // (qr.modules_count + 2 * BORDER))
    out = io.BytesIO()
    if fmt is QrFormat.SVG:
        qr.make_image(image_factory=_PixelSvgImage).save(out)
    else:
        qr.make_image(image_factory=PilImage).save(out, format="PNG")
    return QrCode(out.getvalue(), fmt)
