"""QR images, checked the way a phone would: decoded by a real QR reader (zxing-cpp)."""

from __future__ import annotations

import functools
import io
import re
import xml.etree.ElementTree as ET

import pytest
import zxingcpp
from PIL import Image, ImageDraw

from totpd import otp, qr
from totpd.model import Algorithm, QrCode, QrFormat, TotpParams

SVG_NS = "{http://www.w3.org/2000/svg}"
SECRET = bytes(range(20))
TYPICAL = otp.otpauth_uri(SECRET, TotpParams(), "Example Co", "alice@example.com")
LONG_ACCOUNT = ("firstname.lastname+" * 11)[:200] + "@example.com"
LONG = otp.otpauth_uri(SECRET, TotpParams(Algorithm.SHA512, 8, 60), "Example Co", LONG_ACCOUNT)
# One square per dark module, exactly as qrcode's SvgPathSquareDrawer writes it.
SUBPATH = re.compile(r"M(\d+),(\d+)H(\d+)V(\d+)H(\d+)z")
QUIET_ZONE = 4  # modules of light border, as ISO/IEC 18004 asks


def _decode(image: Image.Image) -> str:
    results = zxingcpp.read_barcodes(image)
    assert len(results) == 1, "expected exactly one QR code"
    assert results[0].format == zxingcpp.BarcodeFormat.QRCode
    return str(results[0].text)


@functools.cache
def _render(data: str, fmt: QrFormat, size: int) -> QrCode:
    """qr.render, once per argument set: several tests look at one image."""
    return qr.render(data, fmt, size)


def _png(data: str, size: int) -> Image.Image:
    code = _render(data, QrFormat.PNG, size)
    assert code.format is QrFormat.PNG
    assert code.image.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(code.image))
    image.load()
    return image.convert("L")


def _module_pixels(image: Image.Image) -> int:
    """Pixels per module, measured from the top-left finder pattern (7 dark modules wide),
    which starts right after the 4-module quiet zone."""
    width, height = image.size
    pixels = image.load()
    assert pixels is not None
    first_dark_row = next(y for y in range(height) if any(pixels[x, y] < 128 for x in range(width)))
    first_dark = next(x for x in range(width) if pixels[x, first_dark_row] < 128)
    run = 0
    while pixels[first_dark + run, first_dark_row] < 128:
        run += 1
    assert run % 7 == 0, f"finder pattern edge of {run} px is not 7 whole modules"
    box = run // 7
    assert first_dark == first_dark_row == QUIET_ZONE * box, "quiet zone is not 4 modules"
    return box


def _assert_whole_pixel_modules(image: Image.Image, box: int) -> int:
    width, height = image.size
    assert width == height
    assert width % box == 0
    modules = width // box
    assert (modules - 2 * QUIET_ZONE - 21) % 4 == 0, "not a QR version's module count"
    # Every box x box cell has one colour: shrinking then growing again changes nothing.
    small = image.resize((modules, modules), Image.Resampling.NEAREST)
    assert small.resize((width, height), Image.Resampling.NEAREST).tobytes() == image.tobytes()
    assert set(image.tobytes()) <= {0, 255}
    return modules


@pytest.mark.parametrize(
    ("data", "size"),
    [(TYPICAL, 256), (TYPICAL, 333), (TYPICAL, 1024), (LONG, 256), (LONG, 1024)],
    ids=["typical-256", "typical-333", "typical-1024", "long-256", "long-1024"],
)
def test_png_decodes_to_exactly_the_uri_and_fits_the_size(data: str, size: int) -> None:
    image = _png(data, size)
    assert _decode(image) == data
    assert image.size[0] <= size and image.size[1] <= size
    box = _module_pixels(image)
    modules = _assert_whole_pixel_modules(image, box)
    # As large as fits: one more pixel per module would overflow the size.
    assert modules * (box + 1) > size


def test_png_of_the_smallest_size_for_a_typical_uri() -> None:
    image = _png(TYPICAL, 64)
    assert _decode(image) == TYPICAL
    assert image.size[0] <= 64
    _assert_whole_pixel_modules(image, _module_pixels(image))


def test_long_uri_needs_a_bigger_qr_version() -> None:
    typical, long = _png(TYPICAL, 256), _png(LONG, 256)
    typical_modules = typical.size[0] // _module_pixels(typical)
    long_modules = long.size[0] // _module_pixels(long)
    assert long_modules > typical_modules


@pytest.mark.parametrize("fmt", [QrFormat.PNG, QrFormat.SVG])
def test_a_code_with_more_modules_than_pixels_gets_one_pixel_per_module(fmt: QrFormat) -> None:
    # As the proto documents: LONG (a 200-character account, within validation's 256
    # bytes) is a version 14 code, 73 modules plus the quiet zone: 81 px even at 1 px a
    # module, more than the smallest qr_code_size of 64.
    if fmt is QrFormat.PNG:
        image = _png(LONG, 64)
        assert _decode(image) == LONG
        width = image.size[0]
    else:
        width = int(_svg(LONG, 64)[0].attrib["width"])
    assert width == 73 + 2 * 4


# Other versions and segment modes than those of TYPICAL and LONG, from the smallest code
# to the largest (version 40, at one pixel a module).
OTHER_CODES = {
    "version-1-byte": ("a", 64),
    "numeric": ("0" * 40, 256),
    "alphanumeric": ("HELLO WORLD 1234", 1024),
    "digit-run-in-bytes": ("x" * 5 + "0" * 20 + "x" * 5, 333),
    "non-ascii-account": (
        otp.otpauth_uri(SECRET, TotpParams(), "Ünïcode Co", "名前@例え.jp"),
        512,
    ),
    "version-40": ("a" * 2331, 64),
}


@pytest.mark.parametrize(("data", "size"), OTHER_CODES.values(), ids=OTHER_CODES.keys())
def test_codes_of_other_versions_and_modes_decode(data: str, size: int) -> None:
    image = _png(data, size)
    assert _decode(image) == data
    _assert_whole_pixel_modules(image, _module_pixels(image))
    svg, _ = _rasterize(_svg(data, size)[0])
    assert svg.tobytes() == image.tobytes()


# -- SVG -------------------------------------------------------------------------------


def _svg(data: str, size: int) -> tuple[ET.Element, bytes]:
    code = _render(data, QrFormat.SVG, size)
    assert code.format is QrFormat.SVG
    root = ET.fromstring(code.image)  # well-formed XML, or this raises
    return root, code.image


def _rasterize(root: ET.Element) -> tuple[Image.Image, int]:
    """Draw the path's squares on a white canvas; returns the image and the module size."""
    width, height = int(root.attrib["width"]), int(root.attrib["height"])
    paths = root.findall(f"{SVG_NS}path")
    assert len(paths) == 1
    d = paths[0].attrib["d"]
    squares = SUBPATH.findall(d)
    assert squares, "no module squares in the path"
    # The path is nothing but such squares.
    assert "".join(f"M{x0},{y0}H{x1}V{y1}H{x2}z" for x0, y0, x1, y1, x2 in squares) == d
    canvas = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(canvas)
    sides = set()
    for x0, y0, x1, y1, x2 in (tuple(map(int, s)) for s in squares):
        assert x2 == x0, "a square closes where it started"
        sides.add((x1 - x0, y1 - y0))
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=0)
    assert len(sides) == 1, "every module is the same size"
    (side, other), *_ = sides
    assert side == other
    return canvas, side


@pytest.mark.parametrize(
    ("data", "size"),
    [(TYPICAL, 64), (TYPICAL, 256), (LONG, 256), (LONG, 1024)],
    ids=["typical-64", "typical-256", "long-256", "long-1024"],
)
def test_svg_is_sized_in_pixels_and_decodes_to_exactly_the_uri(data: str, size: int) -> None:
    root, raw = _svg(data, size)
    assert root.tag == f"{SVG_NS}svg"
    width, height = root.attrib["width"], root.attrib["height"]
    assert re.fullmatch(r"[1-9][0-9]*", width), width  # CSS pixels: a bare integer
    assert width == height
    assert int(width) <= size
    assert root.attrib["viewBox"] == f"0 0 {width} {height}"
    assert data.encode() not in raw  # the URI is drawn, not embedded as text

    canvas, box = _rasterize(root)
    assert _decode(canvas) == data
    assert _module_pixels(canvas) == box
    modules = _assert_whole_pixel_modules(canvas, box)
    assert modules * (box + 1) > size


def test_svg_and_png_of_one_uri_have_the_same_modules() -> None:
    png = _png(TYPICAL, 256)
    svg, _ = _rasterize(_svg(TYPICAL, 256)[0])
    assert svg.size == png.size
    assert svg.tobytes() == png.tobytes()
