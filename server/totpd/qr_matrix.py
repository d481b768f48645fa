"""QR code module matrices (ISO/IEC 18004, error correction level M), built on ints.

The matrix is exactly the one the ``qrcode`` package makes of the same text with
``QRCode(error_correction=ERROR_CORRECT_M)``, ``add_data(text)`` and ``make(fit=True)``: its
mode segments, the smallest version that holds them, the same codewords, and the mask its
penalty score (``qrcode.util.lost_point``) picks. tests/unit/test_qr_matrix.py checks that
module for module. ``qrcode`` itself takes 15-40 ms for an otpauth URI, nearly all of it in
Python loops over single modules (eight trial matrices, each scored); this takes 0.1 ms for
a typical one (111 characters, version 6) and 0.23 ms for one of 358 (version 14), as no
step loops over modules:

- A matrix is one int, ``stride`` bits a row, row 0 in the highest bits: ``to_bytes`` gives
  the rows in reading order, the leftmost module in the high bit, as PNG packs pixels. A row
  is ``QUIET`` light bits, the modules, then light bits up to a multiple of 8 (at least 4:
  the quiet zone on both sides). No pattern can run on through those never-set bits from
  one row into the next, which keeps the penalty rules below within rows.
- What depends only on the version (function patterns, where each data bit goes, the eight
  mask patterns) is worked out on the version's first use and kept.
- The data bits are placed by slice assignments on a string of "0"/"1" bytes, one for each
  stretch of a column in the zig-zag order, and read back with one ``int(..., 2)``.
- Reed-Solomon keeps each block's remainder as one int: a table lookup per byte.
- Masking is one XOR. The four penalty rules are shifts, ANDs and popcounts over the whole
  matrix, about 50 int operations and 8 popcounts a mask; shifting by ``stride`` instead
  of 1 gives the columns, so nothing is transposed.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from qrcode import base, util
from qrcode.constants import ERROR_CORRECT_M

# Light modules before each row's first module: the quiet zone ISO/IEC 18004 asks for.
QUIET: Final = 4
# qrcode's add_data default: a run of digits (or of alphanumeric characters) becomes a
# segment of its own from this length on.
_SEGMENT_MINIMUM: Final = 20
# Bits of a segment's character count, by version class (1-9, 10-26, 27-40).
_COUNT_BITS: Final[tuple[dict[int, int], ...]] = tuple(
    {int(mode): bits for mode, bits in sizes.items()}
    for sizes in (util.MODE_SIZE_SMALL, util.MODE_SIZE_MEDIUM, util.MODE_SIZE_LARGE)
)
_ALPHANUMERIC: Final = bytes.maketrans(util.ALPHA_NUM, bytes(range(len(util.ALPHA_NUM))))
_NUMERIC_RUN: Final = re.compile(rb"\d{%d,}" % _SEGMENT_MINIMUM)
_ALPHANUMERIC_RUN: Final = re.compile(b"[%s]{%d,}" % (re.escape(util.ALPHA_NUM), _SEGMENT_MINIMUM))
_PADDING: Final = bytes((util.PAD0, util.PAD1)) * 1500  # more than version 40 holds


@dataclass(frozen=True, slots=True)
class Matrix:
    """The modules of one QR code: a set bit is a dark module (layout: see the module doc)."""

    bits: int
    side: int  # modules a row, and rows
    stride: int  # bits a row, a multiple of 8

    def rows(self) -> list[str]:
        """The modules row by row, "1" for dark, for readers that go module by module."""
        text = format(self.bits, f"0{self.side * self.stride}b")
        return [text[at : at + self.side] for at in range(QUIET, len(text), self.stride)]


Segment = tuple[int, bytes]  # (qrcode's mode number, the bytes it encodes)


def segments(text: str) -> list[Segment]:
    """The segments ``qrcode``'s ``add_data`` cuts: runs of 20 or more digits, then within
    the rest runs of 20 or more alphanumeric characters, bytes around them. Not the
    shortest encoding: the one to match. Its own ``optimal_data_chunks`` gives the same in
    13 us (it builds its patterns and QRData objects on every call), this in 4."""
    data = text.encode()
    if len(data) <= _SEGMENT_MINIMUM:  # whole-text rules; never an otpauth URI
        return [(s.mode, s.data) for s in util.optimal_data_chunks(data, _SEGMENT_MINIMUM)]
    out: list[Segment] = []
    for is_numeric, chunk in _split(data, _NUMERIC_RUN):
        if is_numeric:
            out.append((util.MODE_NUMBER, chunk))
        else:
            out.extend(
                (util.MODE_ALPHA_NUM if is_alphanumeric else util.MODE_8BIT_BYTE, part)
                for is_alphanumeric, part in _split(chunk, _ALPHANUMERIC_RUN)
            )
    return out


def _split(data: bytes, run: re.Pattern[bytes]) -> Iterator[tuple[bool, bytes]]:
    """``data`` cut into the matches of ``run`` (True) and what lies between (False)."""
    at = 0
    for match in run.finditer(data):
        start, end = match.span()
        if start > at:
            yield False, data[at:start]
        yield True, data[start:end]
        at = end
    if at < len(data):
        yield False, data[at:]


def _version_class(version: int) -> int:
    return 0 if version < 10 else 1 if version < 27 else 2


def _payload_bits(mode: int, count: int) -> int:
    if mode == util.MODE_8BIT_BYTE:
        return 8 * count
    if mode == util.MODE_ALPHA_NUM:
        return 11 * (count // 2) + 6 * (count % 2)
    return 10 * (count // 3) + (0, 4, 7)[count % 3]


def fit(segs: Sequence[Segment], level: int = ERROR_CORRECT_M) -> int:
    """The smallest version that holds ``segs``, found as ``QRCode.best_fit`` does: try the
    count field widths of version 1, and again for the version that gives if its widths are
    wider. Raises ValueError if not even version 40 does."""
    limits = util.BIT_LIMIT_TABLE[level]
    payload = sum(_payload_bits(mode, len(data)) for mode, data in segs)
    version = 1
    while True:
        widths = _COUNT_BITS[_version_class(version)]
        needed = payload + sum(4 + widths[mode] for mode, _ in segs)
        found = bisect_left(limits, needed, version)
        if found > 40:
            raise ValueError(f"{needed} bits are more than a QR code holds")
        if _version_class(found) == _version_class(version):
            return found
        version = found


def _data_codewords(segs: Sequence[Segment], version: int, capacity: int) -> bytes:
    """The segments as a bit stream (mode, count, data), terminator, zero bits to a whole
    byte and the alternating pad bytes, as ``qrcode.util.create_data`` writes them."""
    widths = _COUNT_BITS[_version_class(version)]
    value = length = 0
    for mode, data in segs:
        count = len(data)
        width = widths[mode]
        value = (((value << 4) | mode) << width) | count
        length += 4 + width
        if mode == util.MODE_8BIT_BYTE:
            value = (value << 8 * count) | int.from_bytes(data, "big")
        elif mode == util.MODE_ALPHA_NUM:
            codes = data.translate(_ALPHANUMERIC)
            for i in range(0, count - 1, 2):
                value = (value << 11) | (codes[i] * 45 + codes[i + 1])
            if count % 2:
                value = (value << 6) | codes[-1]
        else:
            for i in range(0, count, 3):
                digits = data[i : i + 3]
                value = (value << util.NUMBER_LENGTH[len(digits)]) | int(digits)
        length += _payload_bits(mode, count)
    capacity_bits = 8 * capacity
    # Up to four terminator bits, then zero bits to a whole byte.
    end = min(length + 4, capacity_bits)
    end += -end % 8
    used = end // 8
    return (value << (end - length)).to_bytes(used, "big") + _PADDING[: capacity - used]


@functools.cache
def _ec_table(ec: int) -> tuple[int, ...]:
    """For each byte f: f times the Reed-Solomon generator polynomial of degree ``ec``
    (without its leading 1), its ``ec`` coefficients as one big-endian int."""
    exp, log = base.EXP_TABLE, base.LOG_TABLE

    def mul(a: int, b: int) -> int:
        return exp[(log[a] + log[b]) % 255] if a and b else 0

    generator = [1]  # (x - a^0)(x - a^1)...(x - a^(ec-1)), highest power first
    for i in range(ec):
        generator = [
            c ^ mul(prev, exp[i]) for c, prev in zip([*generator, 0], [0, *generator], strict=True)
        ]
    return tuple(int.from_bytes(bytes(mul(f, g) for g in generator[1:]), "big") for f in range(256))


def _ec_codewords(data: bytes, ec: int) -> bytes:
    """The remainder of data(x) x^ec divided by the generator, by a shift register kept
    as one int: a lookup, two shifts and two XORs a byte (0.14 us). The remainder is linear
    in the data, so a table of 256 ints for each byte position of a block would make it
    one lookup and XOR a byte, all in C (reduce over map): 8 us less for a version 6 code
    and 29 for version 14, but 0.4 MB of tables for version 6 and 5 MB for all of them."""
    table = _ec_table(ec)
    top = 8 * (ec - 1)
    low = (1 << top) - 1
    remainder = 0
    for byte in data:
        remainder = ((remainder & low) << 8) ^ table[(remainder >> top) ^ byte]
    return remainder.to_bytes(ec, "big")


@dataclass(frozen=True, slots=True)
class _Block:
    data: slice  # its data codewords, in the data stream
    ec: int  # its number of error correction codewords
    to_data: slice  # where its data codewords go in the interleaved sequence...
    last_to: int  # ...except the last one of a longer block, which goes here (else -1)
    to_ec: slice  # where its error correction codewords go


@functools.cache
def _blocks(version: int, level: int) -> tuple[tuple[_Block, ...], int]:
    """How the data is cut into blocks and the blocks interleaved (ISO/IEC 18004 7.6:
    the i-th codeword of every block in turn, data first). Also the total codeword count."""
    rs = base.rs_blocks(version, level)
    count = len(rs)
    short = min(b.data_count for b in rs)
    first_long = next((i for i, b in enumerate(rs) if b.data_count > short), count)
    data_total = sum(b.data_count for b in rs)
    blocks, start = [], 0
    for i, b in enumerate(rs):
        ec = b.total_count - b.data_count
        blocks.append(
            _Block(
                data=slice(start, start + b.data_count),
                ec=ec,
                to_data=slice(i, short * count, count),
                last_to=short * count + i - first_long if b.data_count > short else -1,
                to_ec=slice(data_total + i, None, count),
            )
        )
        start += b.data_count
    return tuple(blocks), sum(b.total_count for b in rs)


def codewords(segs: Sequence[Segment], version: int, level: int = ERROR_CORRECT_M) -> bytes:
    """Data and error correction codewords, interleaved: the sequence placed in the matrix,
    and what ``qrcode.util.create_data`` returns for the same segments."""
    blocks, total = _blocks(version, level)
    data = _data_codewords(segs, version, util.BIT_LIMIT_TABLE[level][version] // 8)
    out = bytearray(total)
    for block in blocks:
        part = data[block.data]
        if block.last_to < 0:
            out[block.to_data] = part
        else:
            out[block.to_data] = part[:-1]
            out[block.last_to] = part[-1]
        out[block.to_ec] = _ec_codewords(part, block.ec)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class _Layout:
    """What one version's matrices share."""

    side: int
    stride: int
    # "0"/"1" for each bit of the matrix: the dark modules of the function patterns, with
    # the format and version information and the dark module left light, as qrcode has
    # them while it scores the masks.
    blank: bytes
    # (into the matrix string, from the codeword bit string): the data placement.
    placement: tuple[tuple[slice, slice], ...]
    modules: int  # every module of the matrix
    has_left: int  # the modules with a module left of them
    has_above: int  # the modules with a module above them
    # For each mask: its pattern over the data modules, then the modules where the pattern
    # differs from the module left of them, XOR has_left, and from the one above, XOR
    # has_above (see _best_mask).
    masks: tuple[tuple[int, int, int], ...]
    # For each mask: the format information, version information and dark module.
    finish: tuple[int, ...]


def _bits(cells: Iterable[tuple[int, int]], side: int, stride: int) -> int:
    """The matrix int with ``cells`` (row, column) dark."""
    string = bytearray(b"0" * (side * stride))
    for r, c in cells:
        string[r * stride + QUIET + c] = ord("1")
    return int(string, 2)


Grid = list[list[bool | None]]  # row by row: dark, light, or None for a data module
Cell = tuple[int, int]  # (row, column)


def _function_patterns(
    version: int,
) -> tuple[Grid, list[tuple[Cell, Cell]], list[tuple[Cell, Cell]]]:
    """The function patterns, drawn as ``qrcode.QRCode.makeImpl`` draws them, with the
    format information (15 bits, twice), the version information (18 bits, twice, from
    version 7) and the dark module left light, as qrcode has them while it scores the
    masks. Also the cells of each format and version information bit."""
    n = 4 * version + 17
    grid: Grid = [[None] * n for _ in range(n)]
    for r0, c0 in ((0, 0), (n - 7, 0), (0, n - 7)):  # finder patterns and their separators
        for r in range(max(-1, -r0), min(8, n - r0)):
            for c in range(max(-1, -c0), min(8, n - c0)):
                ring = max(abs(r - 3), abs(c - 3))  # 4: the separator
                grid[r0 + r][c0 + c] = ring != 2 and ring != 4
    centres = util.pattern_position(version)
    for row in centres:
        for col in centres:
            if grid[row][col] is None:  # not on a finder pattern
                for r in range(-2, 3):
                    for c in range(-2, 3):
                        grid[row + r][col + c] = max(abs(r), abs(c)) != 1
    for i in range(8, n - 8):  # timing patterns
        if grid[i][6] is None:
            grid[i][6] = i % 2 == 0
        if grid[6][i] is None:
            grid[6][i] = i % 2 == 0
    format_cells: list[tuple[Cell, Cell]] = []
    for i in range(15):  # bit i: one cell down column 8, one along row 8
        down = (i, 8) if i < 6 else (i + 1, 8) if i < 8 else (n - 15 + i, 8)
        across = (8, n - i - 1) if i < 8 else (8, 15 - i) if i == 8 else (8, 14 - i)
        format_cells.append((down, across))
    version_cells = (
        [((i // 3, i % 3 + n - 11), (i % 3 + n - 11, i // 3)) for i in range(18)]
        if version >= 7
        else []
    )
    for pair in (*format_cells, *version_cells):
        for r, c in pair:
            grid[r][c] = False
    grid[n - 8][8] = False
    return grid, format_cells, version_cells


def _data_order(grid: Grid) -> list[Cell]:
    """The data modules in placement order (QRCode.map_data): two columns at a time from
    the right, up then down, right column first, skipping the vertical timing pattern."""
    n = len(grid)
    order: list[Cell] = []
    for pair, right in enumerate(range(n - 1, 0, -2)):
        col = right - 1 if right <= 6 else right
        rows = range(n - 1, -1, -1) if pair % 2 == 0 else range(n)
        order.extend((r, c) for r in rows for c in (col, col - 1) if grid[r][c] is None)
    return order


def _runs(cells: list[tuple[int, int]]) -> Iterator[tuple[slice, slice]]:
    """(matrix string, bit string) slice pairs that copy bit k to position i for each
    (i, k) of ``cells``, in order: one pair for each stretch with constant steps."""
    start = 0
    while start < len(cells):
        end = start + 1  # the stretch is cells[start:end]
        steps = (1, 1)
        if end < len(cells):
            steps = (cells[end][0] - cells[start][0], cells[end][1] - cells[start][1])
            while (
                end < len(cells)
                and (
                    cells[end][0] - cells[end - 1][0],
                    cells[end][1] - cells[end - 1][1],
                )
                == steps
            ):
                end += 1
        (to, source), (to_last, source_last) = cells[start], cells[end - 1]
        stop = to_last + steps[0]  # below 0: to the start (a negative stop would wrap)
        yield (
            slice(to, stop if stop >= 0 else None, steps[0]),
            slice(source, source_last + 1, steps[1]),
        )
        start = end


@functools.cache
def _layout(version: int) -> _Layout:
    """Worked out module by module, once for each version: 2 ms for version 1, 6 for
    version 6, 70 for version 40."""
    grid, format_cells, version_cells = _function_patterns(version)
    n = len(grid)
    stride = (n + 2 * QUIET + 7) // 8 * 8
    order = _data_order(grid)
    # Along a column, the bits come at regular steps (2 apart where both columns of the
    # pair take data, 1 where only this one does) from one function pattern to the next:
    # about 2 slices for each column. Modules past the codewords (0-7) stay 0.
    _, total = _blocks(version, ERROR_CORRECT_M)
    columns: dict[int, list[tuple[int, int]]] = {}
    for k, (r, c) in enumerate(order[: 8 * total]):
        columns.setdefault(c, []).append((r * stride + QUIET + c, k))
    blank = _bits(((r, c) for r in range(n) for c in range(n) if grid[r][c]), n, stride)
    modules = _bits(((r, c) for r in range(n) for c in range(n)), n, stride)
    has_left = modules & (modules >> 1)
    has_above = modules & (modules >> stride)
    masks, finish = [], []
    version_bits = util.BCH_type_number(version) if version >= 7 else 0
    for k in range(8):
        mask_func = util.mask_func(k)
        pattern = _bits((cell for cell in order if mask_func(*cell)), n, stride)
        masks.append(
            (
                pattern,
                ((pattern ^ (pattern >> 1)) & has_left) ^ has_left,
                ((pattern ^ (pattern >> stride)) & has_above) ^ has_above,
            )
        )
        format_bits = util.BCH_type_info((ERROR_CORRECT_M << 3) | k)
        dark = [(n - 8, 8)]
        dark += [
            cell for i, pair in enumerate(format_cells) if format_bits >> i & 1 for cell in pair
        ]
        dark += [
            cell for i, pair in enumerate(version_cells) if version_bits >> i & 1 for cell in pair
        ]
        finish.append(_bits(dark, n, stride))
    return _Layout(
        side=n,
        stride=stride,
        blank=format(blank, f"0{n * stride}b").encode(),
        placement=tuple(run for cells in columns.values() for run in _runs(cells)),
        modules=modules,
        has_left=has_left,
        has_above=has_above,
        masks=tuple(masks),
        finish=tuple(finish),
    )


def _line_penalty(dark: int, light: int, same: int, step: int) -> int:
    """N1 and N3 along rows (``step`` 1) or columns (``step`` the stride); ``same`` marks
    the modules equal to their neighbour ``step`` bits up."""
    two = same & (same >> step)  # three modules of one colour from here
    four = two & (two >> 2 * step)  # five
    five = four & (four >> step)  # six
    # N1: 3 + (L - 5) for each run of L >= 5 modules of one colour. Such a run has L - 4
    # places with five in a row and L - 5 with six: 3 (L - 4) - 2 (L - 5) = L - 2.
    runs = 3 * four.bit_count() - 2 * five.bit_count()
    # N3: 40 for each dark:light:dark:light:dark of 1:1:3:1:1 with four light modules
    # after it or before it, all 11 inside the matrix. (qrcode does not count the quiet
    # zone as light there, as ISO/IEC 18004:2015 would; matched as it does.)
    dark3 = dark & two
    light4 = light & two & (same >> 2 * step)
    core = dark & (light >> step) & (dark3 >> 2 * step) & (light >> 5 * step) & (dark >> 6 * step)
    # The two cases start with a dark and a light module: never both at one place.
    finder = (core & (light4 >> 7 * step)) | ((core >> 4 * step) & light4)
    return runs + 40 * finder.bit_count()


def prepare(versions: Iterable[int]) -> None:
    """Work out the tables of these versions now rather than at their first code (6 ms for
    version 6, 70 for version 40): a server calls this before it takes calls."""
    for version in versions:
        _layout(version)
        for block in _blocks(version, ERROR_CORRECT_M)[0]:
            _ec_table(block.ec)


def encode(text: str) -> Matrix:
    """The QR code of ``text`` (UTF-8) at error correction level M."""
    segs = segments(text)
    version = fit(segs)
    layout = _layout(version)
    stream = codewords(segs, version)
    # A bytearray: bytearray slice assignment copies any other source first.
    bits = bytearray(format(int.from_bytes(stream, "big"), f"0{8 * len(stream)}b").encode())
    grid = bytearray(layout.blank)
    for to, source in layout.placement:
        grid[to] = bits[source]
    # Function and data modules never overlap, so a mask is an XOR of the whole matrix.
    unmasked = int(grid, 2)
    best = _best_mask(unmasked, layout)
    return Matrix(
        (unmasked ^ layout.masks[best][0]) | layout.finish[best], layout.side, layout.stride
    )


def _best_mask(unmasked: int, layout: _Layout) -> int:
    """The mask qrcode picks: the first with the lowest qrcode.util.lost_point score of the
    masked matrix, the format and version information and the dark module still light."""
    n, stride = layout.side, layout.stride
    light0 = unmasked ^ layout.modules
    # Masking is an XOR, so whether a module equals its neighbour after masking is the
    # same before masking, XOR the same for the pattern: with the pattern's part kept per
    # version, one XOR a direction instead of four operations.
    differs_left = (unmasked ^ (unmasked >> 1)) & layout.has_left
    differs_above = (unmasked ^ (unmasked >> stride)) & layout.has_above
    best, best_score = 0, -1
    for k, (pattern, left, above) in enumerate(layout.masks):
        dark = unmasked ^ pattern
        light = light0 ^ pattern
        same_left = differs_left ^ left
        same_above = differs_above ^ above
        score = (
            _line_penalty(dark, light, same_left, 1)
            + _line_penalty(dark, light, same_above, stride)
            # N2: 3 for each 2x2 block of one colour.
            + 3 * (same_left & same_above & (same_left >> stride)).bit_count()
            # N4: 10 for each whole 5 % the dark share is off 50 %, in floating point
            # exactly as qrcode computes it.
            + int(abs(float(dark.bit_count()) / (n * n) * 100 - 50) / 5) * 10
        )
        if best_score < 0 or score < best_score:
            best, best_score = k, score
    return best
