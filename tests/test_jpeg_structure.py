"""A JPEG's markers vouch for it only when libjpeg is sure to decode it in full: judged against
Pillow's own decode of thousands of damaged files."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from dataprep.fixtures.draw import encode, photo
from dataprep.jpeg_structure import surely_decodes

from helpers.pillow_decode import decodes_in_full

PLAIN = {
    "4:2:0": ("RGB", {"quality": 95}),
    "4:4:4": ("RGB", {"subsampling": 0}),
    "4:2:2": ("RGB", {"subsampling": 1}),
    "grey": ("L", {"quality": 60}),
    "optimized tables": ("RGB", {"optimize": True}),
    "restart markers": ("RGB", {"restart_marker_blocks": 3}),
    "exif, icc, comment": (
        "RGB",
        {"exif": b"Exif\x00\x00" + bytes(40), "icc_profile": bytes(300), "comment": b"hi"},
    ),
}
NOT_VOUCHED = {
    "progressive": ("RGB", {"progressive": True}),
    "cmyk": ("CMYK", {}),
    "tables left out": ("RGB", {"streamtype": 2}),
}


def _jpeg(mode: str, options: dict[str, object], size: tuple[int, int] = (160, 120)) -> bytes:
    return encode(photo(random.Random(6), *size).convert(mode), "JPEG", **options)


def _damaged(data: bytes, rng: random.Random) -> list[bytes]:
    """`data` cut, overwritten and spliced: every header byte set to five values, then random damage
    (bytes overwritten, markers written into the data, runs cut out, the file cut short)."""
    header_end = data.index(b"\xff\xda") + 14
    damaged = []
    for position in range(2, header_end):
        for value in {0x00, 0xFF, data[position] ^ 0x01, data[position] ^ 0x80, data[position] ^ 0x10}:
            damaged.append(data[:position] + bytes([value]) + data[position + 1 :])
    for _ in range(400):
        changed = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            changed[rng.randrange(2, len(changed))] = rng.randrange(256)
        damaged.append(bytes(changed))
        at = rng.randrange(header_end, len(data) - 2)
        damaged.append(data[:at] + bytes([0xFF, rng.randrange(1, 256)]) + data[at:])
        cut = rng.randrange(2, len(data))
        damaged.append(data[:cut] + data[cut + rng.randrange(1, 50) :])
        damaged.append(data[: rng.randrange(2, len(data))])
    return damaged


@pytest.mark.parametrize("name", PLAIN)
def test_a_plain_baseline_jpeg_is_vouched_for(name):
    assert surely_decodes(_jpeg(*PLAIN[name]))


@pytest.mark.parametrize("name", NOT_VOUCHED)
def test_other_jpegs_are_left_to_the_decoder(name):
    data = _jpeg(*NOT_VOUCHED[name])
    assert not surely_decodes(data)


@pytest.mark.parametrize("name", PLAIN)
def test_a_damaged_jpeg_is_vouched_for_only_if_itdecodes_in_full(name):
    """The one direction that matters: never vouched for and then failing. The other is counted so
    that the comparison says something: damage that only warns is vouched for, fatal damage is not."""
    data = _jpeg(*PLAIN[name])
    vouched = failing = vouched_and_changed = 0
    for candidate in _damaged(data, random.Random(name)):
        decodes = decodes_in_full(candidate)
        failing += not decodes
        if surely_decodes(candidate):
            assert decodes, f"vouched for, yet Pillow fails: {candidate.hex()}"
            vouched += 1
            vouched_and_changed += candidate != data
    assert failing > 100
    assert vouched_and_changed > 100


def test_the_end_of_the_image_must_follow_the_data():
    data = _jpeg(*PLAIN["4:2:0"])
    assert data.endswith(b"\xff\xd9")
    assert surely_decodes(data + b"trailing bytes after the image")
    assert not surely_decodes(data[:-2])
    assert not surely_decodes(data[:-2] + b"\xff\xd8\xff\xd9")  # a second start of image: fatal
    assert not surely_decodes(data[:-1])


def _first_huffman_table(data: bytes) -> int:
    """Where the first DHT segment's first table starts (its class and slot byte)."""
    return data.index(b"\xff\xc4") + 4


def test_a_huffman_table_whose_codes_overflow_is_not_vouched_for():
    data = bytearray(_jpeg(*PLAIN["4:2:0"]))
    counts = _first_huffman_table(data) + 1  # the 16 per-length counts of the luma DC table
    assert data[counts : counts + 3] == bytes([0, 1, 5])
    data[counts : counts + 3] = bytes([2, 1, 3])  # as many codes, but two of one bit leave none
    assert not decodes_in_full(bytes(data))
    assert not surely_decodes(bytes(data))


def test_a_dc_table_with_a_symbol_beyond_fifteen_bits_is_not_vouched_for():
    data = bytearray(_jpeg(*PLAIN["4:2:0"]))
    symbols = _first_huffman_table(data) + 17
    data[symbols] = 16
    assert not decodes_in_full(bytes(data))
    assert not surely_decodes(bytes(data))


def test_a_second_frame_header_is_not_vouched_for():
    data = _jpeg(*PLAIN["4:2:0"])
    frame = data.index(b"\xff\xc0")
    twice = data[:frame] + data[frame : frame + 19] + data[frame:]  # SOF0 of three components: 19 bytes
    assert not decodes_in_full(twice)
    assert not surely_decodes(twice)


def test_a_restart_interval_segment_of_another_length_is_not_vouched_for():
    data = _jpeg(*PLAIN["restart markers"])
    interval = data.index(b"\xff\xdd")
    assert data[interval + 2 : interval + 4] == b"\x00\x04"
    longer = (
        data[:interval]
        + b"\xff\xdd\x00\x06"
        + data[interval + 4 : interval + 6]
        + b"\0\0"
        + data[interval + 6 :]
    )
    assert not decodes_in_full(longer)
    assert not surely_decodes(longer)


def test_a_long_run_of_fill_bytes_is_read_once():
    """FF FF … FF 00 in the data is fill then a stuffed FF: libjpeg decodes on, and so is it vouched
    for; 4 MB of it, which a backtracking search would take days over, is read in one pass (the
    subprocess's time limit only guards against that hang)."""
    data = _jpeg(*PLAIN["4:2:0"])
    scan = data.index(b"\xff\xda") + 14  # after the SOS segment of three components
    filled = data[:scan] + b"\xff" * (4 << 20) + b"\x00" + data[scan:]
    assert decodes_in_full(filled)
    code = "import sys\nfrom dataprep.jpeg_structure import surely_decodes\nprint(surely_decodes(sys.stdin.buffer.read()))"
    done = subprocess.run(
        [sys.executable, "-c", code], input=filled, capture_output=True, timeout=60, check=True
    )
    assert done.stdout.strip() == b"True"


def test_non_jpeg_bytes_are_not_vouched_for():
    assert not surely_decodes(b"")
    assert not surely_decodes(b"\xff\xd8")
    assert not surely_decodes(encode(photo(random.Random(1), 40, 30), "PNG"))
