"""Whether a JPEG is sure to decode in full, told from its markers alone, without decoding pixels.

libjpeg (Pillow's decoder) fails a JPEG only on what its markers say: a table or frame it refuses,
a marker it does not expect, data that ends before the end-of-image marker. Inside the entropy-coded
data of a scan it only warns (a bad Huffman code, a missing restart marker) and decodes on. So a JPEG
whose markers are all of the kinds below, each well formed, decodes in full; libjpeg's checks of
them are copied here (libjpeg-turbo's `jdmarker.c`, `jdinput.c`, `jdhuff.c`):

- one frame, baseline or extended sequential with Huffman coding (SOF0, SOF1), 8-bit, 1 to 65,500
  pixels a side, grey or three components, luma sampled at most 2 × 2 and chroma 1 × 1;
- quantisation and Huffman tables, restart intervals, application and comment segments before its
  one scan, which holds every component and uses only tables defined before it (Huffman tables
  whose codes fit their lengths, DC symbols of at most 15 bits);
- the scan's entropy-coded data, where every marker is a restart marker, then the end of the image.

Anything else (progressive JPEGs, arithmetic coding, fill bytes between segments, a marker inside
the data) is not judged here: `surely_decodes` says False and the caller decodes the file. (libjpeg's
progressive decoder also fails on the data itself, on a DC value that overflows, so a progressive
file's markers could not vouch for it.)
"""

from __future__ import annotations

import re

_SOI = b"\xff\xd8"
_EOI = 0xD9
_SOS = 0xDA
_DQT = 0xDB
_DHT = 0xC4
_DRI = 0xDD
_SEQUENTIAL_FRAMES = frozenset({0xC0, 0xC1})
_SKIPPED_SEGMENTS = frozenset({0xFE, *range(0xE0, 0xF0)})  # comments, APP0 to APP15
_LUMA_SAMPLING = frozenset({(1, 1), (2, 1), (1, 2), (2, 2)})
_MAX_SIDE = 65500  # libjpeg's JPEG_MAX_DIMENSION
_TABLE_SLOTS = 4
# In entropy-coded data FF 00 is a data byte, FF FF... fill bytes; FF then any other byte a marker.
_FF_NOT_STUFFED = re.compile(rb"\xff[^\x00]")  # a marker or fill: `re` finds the literal FF fast
_NOT_FF = re.compile(rb"[^\xff]")
_RESTARTS = range(0xD0, 0xD8)

Component = tuple[int, int, int, int]  # id, horizontal and vertical sampling, quantisation table


def surely_decodes(data: bytes) -> bool:
    """True if libjpeg decodes `data` in full (see the module's docstring); False if that is not
    certain from its markers (it may or may not decode)."""
    if not data.startswith(_SOI):
        return False
    frame: list[Component] | None = None
    quantisation: set[int] = set()
    huffman: dict[tuple[int, int], bool] = {}  # (class, slot) -> whether its codes are valid
    position = 2
    while True:
        if position + 4 > len(data) or data[position] != 0xFF:
            return False
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        end = position + 2 + length  # a length below 2 ends inside its own bytes: no marker follows
        if end > len(data):
            return False
        body = data[position + 4 : end]
        if marker == _SOS:
            return (
                frame is not None
                and _scan_is_sound(body, frame, quantisation, huffman)
                and _data_ends_the_image(data, end)
            )
        if marker in _SEQUENTIAL_FRAMES:
            if frame is not None or (frame := _frame(body)) is None:
                return False
        elif marker == _DQT:
            if not _read_quantisation(body, quantisation):
                return False
        elif marker == _DHT:
            if not _read_huffman(body, huffman):
                return False
        elif marker == _DRI:
            if length != 4:
                return False
        elif marker not in _SKIPPED_SEGMENTS:
            return False
        position = end


def _frame(body: bytes) -> list[Component] | None:
    """The frame's components, or None if it is not one this module vouches for."""
    if len(body) < 6:
        return None
    precision, count = body[0], body[5]
    height, width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
    if precision != 8 or not (0 < height <= _MAX_SIDE and 0 < width <= _MAX_SIDE):
        return None
    if count not in (1, 3) or len(body) != 6 + 3 * count:
        return None
    components = [
        (body[i], body[i + 1] >> 4, body[i + 1] & 15, body[i + 2]) for i in range(6, 6 + 3 * count, 3)
    ]
    luma, *chroma = [(h, v) for _, h, v, _ in components]
    if luma not in _LUMA_SAMPLING or (count == 1 and luma != (1, 1)):
        return None
    return components if all(sampling == (1, 1) for sampling in chroma) else None


def _read_quantisation(body: bytes, defined: set[int]) -> bool:
    """Note the tables a DQT segment defines; False if libjpeg would refuse it."""
    position = 0
    while position < len(body):
        precision, slot = body[position] >> 4, body[position] & 15
        size = 1 + 64 * (precision + 1)
        if precision > 1 or slot >= _TABLE_SLOTS or position + size > len(body):
            return False
        defined.add(slot)
        position += size
    return True


def _read_huffman(body: bytes, tables: dict[tuple[int, int], bool]) -> bool:
    """Note the tables a DHT segment defines and whether each is valid; False if libjpeg would
    refuse the segment itself. (libjpeg checks a table's codes only when a scan uses it.)"""
    position = 0
    while len(body) - position > 16:
        table_class, slot = body[position] >> 4, body[position] & 15
        counts = body[position + 1 : position + 17]
        total = sum(counts)
        symbols = body[position + 17 : position + 17 + total]
        if table_class > 1 or slot >= _TABLE_SLOTS or len(symbols) != total or total > 256:
            return False
        tables[table_class, slot] = _codes_fit(counts) and (table_class == 1 or max(symbols, default=0) <= 15)
        position += 17 + len(symbols)
    return position == len(body)


def _codes_fit(counts: bytes) -> bool:
    """Whether canonical Huffman codes of these per-length counts (1 to 16 bits) exist, none of
    them all ones (libjpeg's `jpeg_make_d_derived_tbl`)."""
    code = 0
    for length, count in enumerate(counts, start=1):
        code += count
        if count and code >= 1 << length:
            return False
        code <<= 1
    return True


def _scan_is_sound(
    body: bytes, frame: list[Component], quantisation: set[int], huffman: dict[tuple[int, int], bool]
) -> bool:
    """Whether the SOS segment starts one scan of every component, with tables defined before it
    (its spectral selection and approximation are not checked: libjpeg only warns of odd ones in a
    sequential file)."""
    count = len(frame)
    if len(body) != 4 + 2 * count or body[0] != count:
        return False
    by_id = {component[0]: component for component in frame}
    selectors = [body[i] for i in range(1, 1 + 2 * count, 2)]
    if sorted(selectors) != sorted(by_id):
        return False
    for index, selector in enumerate(selectors):
        tables = body[2 + 2 * index]
        if not (huffman.get((0, tables >> 4)) and huffman.get((1, tables & 15))):
            return False
        if by_id[selector][3] not in quantisation:
            return False
    return True


def _data_ends_the_image(data: bytes, start: int) -> bool:
    """Whether the first marker after `start` other than a restart marker is the end of the image.
    Each run of FF bytes is read once (a pattern that backtracks over fill bytes takes time
    quadratic in their number: a crafted file could stall a worker)."""
    position = start
    while (found := _FF_NOT_STUFFED.search(data, position)) is not None:
        after_fill = _NOT_FF.search(data, found.start() + 1)
        if after_fill is None:
            return False
        code = data[after_fill.start()]
        if code == _EOI:
            return True
        if code != 0 and code not in _RESTARTS:
            return False
        position = after_fill.start() + 1
    return False
