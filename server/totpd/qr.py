"""QR code images of otpauth URIs (PNG or SVG).

The module matrix comes from ``qr_matrix`` (the matrix the ``qrcode`` package makes, in
0.1 ms instead of its 15-40 ms). Both formats are drawn from it: the PNG by a small PNG
writer (1 bit a pixel, 0.04 ms at 256 px), the SVG as one path of module squares, so a PNG
and an SVG of one URI show the same modules. A whole 256 px PNG of a typical URI takes
0.16 ms, so callers can run it inline on the event loop.
"""

from __future__ import annotations

import functools
import struct
import zlib

from .model import QrCode, QrFormat
from .qr_matrix import QUIET, Matrix, encode, prepare


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache  # box is at most 1024 // 29: a few dozen entries of box * 256 bytes
def _widen(box: int) -> tuple[bytes, ...]:
    """``bytes.translate`` tables, one for each of the ``box`` bytes that 8 modules widen
    to: a byte of the matrix (MSB first, 1 dark) to that byte of its 8 * box pixels (PNG's
    own packing: MSB first, 1 white)."""
    tables = [bytearray(256) for _ in range(box)]
    for byte in range(256):
        pixels = 0
        for bit in range(7, -1, -1):
            pixels = (pixels << box) | (0 if byte >> bit & 1 else (1 << box) - 1)
        for table, value in zip(tables, pixels.to_bytes(box, "big"), strict=True):
            table[byte] = value
    return tuple(bytes(table) for table in tables)


def _deflate(raw: bytes) -> bytes:
    """Level 3: 20 us and ~750 bytes for a typical code; level 6 saves 100 bytes for 55 us
    more, a few percent of a CreateTotp. A 4 KiB window and memLevel 5 (state of ~40 KiB):
    zlib's default (32 KiB, 8: ~270 KiB) is allocated and freed on every call, and in some
    heap states glibc returns it to the kernel each time, so that the next call faults it
    in again: 70 us instead of 20. A row repeats a scanline (at most 129 bytes) back, so
    the small window compresses as well."""
    deflate = zlib.compressobj(3, zlib.DEFLATED, 12, 5)
    return deflate.compress(raw) + deflate.flush()


def _png(matrix: Matrix, box: int) -> bytes:
    """A 1-bit grayscale PNG, written directly. Each step handles every row at once, in C
    (slice assignment, ``bytes.translate``), as per-module Python costs more than zlib."""
    side, row_bytes = matrix.side, matrix.stride // 8
    stride = ((side + 2 * QUIET) * box + 7) // 8  # bytes of pixels a scanline
    # The matrix rows already hold the left and right quiet zone. Put a spare byte before
    # each, widen every byte to box bytes of pixels (the j-th of each group in one strided
    # assignment), and the spare's last byte becomes the row's filter type (0, none).
    rows = bytearray(matrix.bits.to_bytes(side * row_bytes, "big"))
    spaced = bytearray(side * (row_bytes + 1))
    for i in range(row_bytes):
        spaced[1 + i :: row_bytes + 1] = rows[i::row_bytes]
    wide = bytearray(len(spaced) * box)
    for j, table in enumerate(_widen(box)):
        wide[j::box] = spaced.translate(table)
    pitch = (row_bytes + 1) * box
    wide[box - 1 :: pitch] = bytes(side)
    pixels = bytes(wide)  # its slices are bytes, and bytes slice and repeat faster
    quiet = (b"\x00" + b"\xff" * stride) * (QUIET * box)
    scanlines = [quiet]
    scanlines += [pixels[at : at + 1 + stride] * box for at in range(box - 1, len(wide), pitch)]
    scanlines.append(quiet)
    width = (side + 2 * QUIET) * box
    header = struct.pack(">IIBBBBB", width, width, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", _deflate(b"".join(scanlines)))
        + _chunk(b"IEND", b"")
    )


def _svg(matrix: Matrix, box: int) -> bytes:
    """An SVG on a white background (scannable on a dark page too), sized in CSS pixels like
    the PNG: one ``M x,y H x' V y' H x z`` square per dark module, as ``qrcode`` writes it."""
    width = (matrix.side + 2 * QUIET) * box
    squares = []
    for row, modules in enumerate(matrix.rows()):
        y0 = (row + QUIET) * box
        y1 = y0 + box
        for col, module in enumerate(modules):
            if module == "1":
                x0 = (col + QUIET) * box
                squares.append(f"M{x0},{y0}H{x0 + box}V{y1}H{x0}z")
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f'<svg width="{width}" height="{width}" version="1.1" viewBox="0 0 {width} {width}" '
        'xmlns="http://www.w3.org/2000/svg">'
        '<rect fill="white" x="0" y="0" width="100%" height="100%" />'
        f'<path d="{"".join(squares)}" id="qr-path" fill="#000000" fill-opacity="1" '
        'fill-rule="nonzero" stroke="none" /></svg>'
    ).encode()


# The versions an otpauth URI of a usual length needs at level M: version 10 holds 213
# bytes, and a URI with a 20-character issuer and a 30-character account is about 110.
USUAL_VERSIONS = range(1, 11)


def prepare_usual_versions() -> None:
    """Build the tables of USUAL_VERSIONS now (about 40 ms), so that no call waits for
    them: each is otherwise built at its first QR code, once per process."""
    prepare(USUAL_VERSIONS)


def render(data: str, fmt: QrFormat, size: int) -> QrCode:
    """A QR code of ``data`` at most ``size`` pixels wide, with whole pixels per module
    (one pixel per module, and so wider, if it has more modules than that)."""
    matrix = encode(data)
    box = max(1, size // (matrix.side + 2 * QUIET))
    if fmt is QrFormat.SVG:
        return QrCode(_svg(matrix, box), fmt)
    return QrCode(_png(matrix, box), fmt)
