"""QR code images of otpauth URIs (PNG or SVG).

The module matrix comes from zxing-cpp's compiled QR encoder (smallest version for error
correction level M, best of the eight masks by the ISO/IEC 18004 penalty rules): about
0.1 ms for a typical URI, where the pure Python ``qrcode`` package takes 15-40 ms (its
mask selection is most of it). ``qrcode`` stays as the fallback encoder for a machine
without the zxing-cpp wheel. Both formats are drawn from the same matrix: the PNG by
a small PNG writer (1 bit a pixel), the SVG as one path of module squares, so a PNG and an SVG of
one URI show the same modules. A whole render is well under a millisecond, so callers can
run it inline on the event loop.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from PIL import Image

from .model import QrCode, QrFormat

BORDER = 4  # the quiet zone ISO/IEC 18004 asks for, in modules

# A square matrix of modules, row by row, one byte each: 0 dark, 255 light.
Matrix = tuple[bytes, int]


def _zxing_matrix(data: str) -> Matrix:
    import zxingcpp

    barcode = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    image = barcode.to_image(scale=1, add_quiet_zones=False)
    side = int(image.shape[0])
    return bytes(memoryview(image)), side  # type: ignore[arg-type]


def _qrcode_matrix(data: str) -> Matrix:
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=0, box_size=1)
    qr.add_data(data)
    qr.make(fit=True)  # smallest version that fits, best of the eight masks
    rows = qr.get_matrix()
    return bytes(0 if dark else 255 for row in rows for dark in row), len(rows)


def _pick_encoder() -> Callable[[str], Matrix]:
    try:
        import zxingcpp

        zxingcpp.create_barcode  # noqa: B018 - older wheels read but cannot write
    except (ImportError, AttributeError):
        return _qrcode_matrix
    return _zxing_matrix


matrix: Callable[[str], Matrix] = _pick_encoder()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(modules: bytes, side: int, box: int) -> bytes:
    """A 1-bit grayscale PNG, written directly: Pillow's PNG writer costs more than the
    whole QR encoding for an image this simple."""
    full = side + 2 * BORDER
    width = full * box
    canvas = Image.new("L", (full, full), 255)
    canvas.paste(Image.frombytes("L", (side, side), modules), (BORDER, BORDER))
    # Widen each module row to pixels, pack it a bit a pixel (PNG's own layout: MSB first,
    # 1 is white), then repeat it box times, each behind filter type 0.
    if box > 1:
        canvas = canvas.resize((width, full), Image.Resampling.NEAREST)
    packed = canvas.convert("1", dither=Image.Dither.NONE).tobytes()
    stride = (width + 7) // 8
    rows = (b"\x00" + packed[i : i + stride] for i in range(0, len(packed), stride))
    raw = b"".join(row * box for row in rows)
    header = struct.pack(">IIBBBBB", width, width, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        # Level 3: 20 us and ~740 bytes for a typical code; level 6 saves 100 bytes for
        # 55 us more, a few percent of a CreateTotp.
        + _chunk(b"IDAT", zlib.compress(raw, 3))
        + _chunk(b"IEND", b"")
    )


def _svg(modules: bytes, side: int, box: int) -> bytes:
    """An SVG on a white background (scannable on a dark page too), sized in CSS pixels like
    the PNG: one ``M x,y H x' V y' H x z`` square per dark module, as ``qrcode`` writes it."""
    width = (side + 2 * BORDER) * box
    squares = []
    for row in range(side):
        y0 = (row + BORDER) * box
        y1 = y0 + box
        base = row * side
        for col in range(side):
            if modules[base + col] == 0:
                x0 = (col + BORDER) * box
                squares.append(f"M{x0},{y0}H{x0 + box}V{y1}H{x0}z")
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f'<svg width="{width}" height="{width}" version="1.1" viewBox="0 0 {width} {width}" '
        'xmlns="http://www.w3.org/2000/svg">'
        '<rect fill="white" x="0" y="0" width="100%" height="100%" />'
        f'<path d="{"".join(squares)}" id="qr-path" fill="#000000" fill-opacity="1" '
        'fill-rule="nonzero" stroke="none" /></svg>'
    ).encode()


def render(data: str, fmt: QrFormat, size: int) -> QrCode:
    """A QR code of ``data`` at most ``size`` pixels wide, with whole pixels per module
    (one pixel per module, and so wider, if it has more modules than that)."""
    modules, side = matrix(data)
    box = max(1, size // (side + 2 * BORDER))
    if fmt is QrFormat.SVG:
        return QrCode(_svg(modules, side, box), fmt)
    return QrCode(_png(modules, side, box), fmt)
