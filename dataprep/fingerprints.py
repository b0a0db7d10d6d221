"""Fingerprints of a decoded image and of question text, for decontamination and duplicate search.

An image has three: `pixels`, a digest of its RGB pixels and size (equal only for the same picture
decoded to the same pixels: a lossless re-encoding, the same file twice); `phash`, a 64-bit DCT
perceptual hash of its luminance (the low 8×8 frequencies of a 32×32 reduction against their
median), which survives re-encoding, resizing, grayscale and crops of a few pixels; and `dhash`, a
64-bit difference hash (horizontal gradients of a 9×8 reduction), an independent second opinion.
Both hashes follow the published algorithms (as in the `imagehash` package) in numpy alone, so the
core needs no scipy/PyWavelets and the bits depend only on Pillow's reductions.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

HASH_SIDE = 32
"""The side of the luminance reduction whose DCT gives the perceptual hash."""
LOW_FREQUENCIES = 8
"""The low frequencies kept per axis: 8 × 8 = 64 bits."""
COMPARE_SIDE = 192
"""The side both images are reduced to (and blurred at) by `picture_difference`."""
MAX_SHIFT = 3
"""Pixels (at `COMPARE_SIDE`) one image is shifted by to find the best alignment (crops)."""
SCALES = (1.01, 1.02, 1.03, 1.04)
"""Magnifications of either image tried besides none: a crop of a few pixels enlarges the rest."""
BLOCK = 6
"""The side of the blocks whose share of differing pixels `picture_difference` reports the largest of."""
LEVELS = 48
"""A pixel differs when its luminance differs by more than this (of 255) once aligned."""


@dataclass(frozen=True)
class ImageFingerprint:
    pixels: str
    phash: str
    dhash: str

    def to_json(self) -> dict[str, str]:
        return {"pixels": self.pixels, "phash": self.phash, "dhash": self.dhash}

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> ImageFingerprint:
        return cls(fields["pixels"], fields["phash"], fields["dhash"])


def image_fingerprint(image: Image.Image) -> ImageFingerprint:
    """The fingerprints of a decoded (8-bit) image, from its first frame as loaded."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}\n".encode())
    digest.update(rgb.tobytes())
    gray = rgb.convert("L")
    return ImageFingerprint(digest.hexdigest()[:32], _hex(perceptual_bits(gray)), _hex(difference_bits(gray)))


def perceptual_bits(gray: Image.Image) -> np.ndarray:
    """pHash: the 8×8 lowest DCT frequencies of a 32×32 reduction above their median."""
    small = np.asarray(gray.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX), dtype=np.float64)
    basis = _dct_basis(HASH_SIDE)
    low = (basis @ small @ basis.T)[:LOW_FREQUENCIES, :LOW_FREQUENCIES]
    return (low > np.median(low)).ravel()


def difference_bits(gray: Image.Image) -> np.ndarray:
    """dHash: whether each pixel of a 9×8 reduction is brighter than its left neighbour."""
    small = np.asarray(gray.resize((LOW_FREQUENCIES + 1, LOW_FREQUENCIES), Image.Resampling.BOX), np.int16)
    return (small[:, 1:] > small[:, :-1]).ravel()


@lru_cache(maxsize=1)
def _dct_basis(side: int) -> np.ndarray:
    """The orthonormal DCT-II matrix of size `side`."""
    k = np.arange(side)[:, None]
    n = np.arange(side)[None, :]
    basis = np.cos(np.pi * (2 * n + 1) * k / (2 * side)) * np.sqrt(2 / side)
    basis[0] /= np.sqrt(2)
    return basis


def _hex(bits: np.ndarray) -> str:
    return f"{int(''.join('1' if bit else '0' for bit in bits), 2):016x}"


def hamming(first: str, second: str) -> int:
    """Bits in which two hex hashes differ."""
    return (int(first, 16) ^ int(second, 16)).bit_count()


def picture_difference(first: Image.Image, second: Image.Image) -> float:
    """How different two pictures look where they differ most: both reduced to the same blurred
    square of luminance, aligned as well as a shift of up to `MAX_SHIFT` pixels and a magnification
    in `SCALES` of either allow (small crops), then the largest share (0–1) of pixels differing by
    more than `LEVELS` in any `BLOCK`×`BLOCK` block. Re-encoding, resizing, grayscale and small
    crops leave thin edge differences; another label or bar fills its block. The alignment is
    searched at half the side, then refined by a pixel at the full side."""
    scales = [(1.0, 1.0)] + [pair for scale in SCALES for pair in ((scale, 1.0), (1.0, scale))]
    half, full = COMPARE_SIDE // 2, COMPARE_SIDE
    coarse = [
        (scale, *_best_shift(first, second, scale, half, range(-MAX_SHIFT, MAX_SHIFT + 1)))
        for scale in scales
    ]
    (scale_first, scale_second), shift, _ = min(coarse, key=lambda found: found[2])
    fixed = _compared(first, scale_first, full)
    moved = _compared(second, scale_second, full)
    shifts = range(-1, 2)
    best = min(
        (_difference(fixed, moved, 2 * shift[0] + dy, 2 * shift[1] + dx) for dy in shifts for dx in shifts),
        key=lambda difference: float(difference.mean()),
    )
    blocks = best.shape[0] // BLOCK
    differing = best[: blocks * BLOCK, : blocks * BLOCK] > LEVELS
    return float(differing.reshape(blocks, BLOCK, blocks, BLOCK).mean(axis=(1, 3)).max())


def _best_shift(
    first: Image.Image, second: Image.Image, scales: tuple[float, float], side: int, shifts: range
) -> tuple[tuple[int, int], float]:
    """The shift of `second` that makes the two closest at `side`, and their mean difference then."""
    fixed, moved = _compared(first, scales[0], side), _compared(second, scales[1], side)
    return min(
        (((dy, dx), float(_difference(fixed, moved, dy, dx).mean())) for dy in shifts for dx in shifts),
        key=lambda found: found[1],
    )


def _difference(fixed: np.ndarray, moved: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Absolute differences over the inner square where `moved`, shifted by (dy, dx), overlaps."""
    margin = 2 * MAX_SHIFT + 2
    inner = fixed.shape[0] - 2 * margin
    core = fixed[margin : margin + inner, margin : margin + inner]
    return np.abs(core - moved[margin + dy : margin + dy + inner, margin + dx : margin + dx + inner])


def _compared(image: Image.Image, scale: float, side: int) -> np.ndarray:
    """The image's luminance as `picture_difference` compares it, magnified by `scale` (centre kept)."""
    magnified = round(side * scale)
    gray = image.convert("L").resize((magnified, magnified), Image.Resampling.BOX)
    gray = gray.filter(ImageFilter.GaussianBlur(side / COMPARE_SIDE))
    offset = (magnified - side) // 2
    return np.asarray(gray, np.float32)[offset : offset + side, offset : offset + side]


WORD = re.compile(r"\w+")


def normalized_words(text: str) -> list[str]:
    """Words of a text, case-folded and NFKC-normalized, without punctuation or `<image>` tags."""
    text = unicodedata.normalize("NFKC", text.replace("<image>", " ")).casefold()
    return WORD.findall(text)


def ngrams(text: str, n: int) -> set[str]:
    """The word n-grams of each line of `text` (a prompt's instruction on its own line makes no gram
    with the question); a line shorter than `n` words is one gram (an empty one none)."""
    grams = set()
    for line in text.splitlines():
        words = normalized_words(line)
        if len(words) <= n:
            grams.update([" ".join(words)] if words else [])
        else:
            grams.update(" ".join(words[start : start + n]) for start in range(len(words) - n + 1))
    return grams


def normalized_answer(text: str) -> str:
    return " ".join(normalized_words(text))
