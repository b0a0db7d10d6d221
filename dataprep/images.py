"""Image policy: load inside a root, validate fully, keep original bytes or re-encode (decoded and
encoded by Pillow, resampled by libvips)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from dataprep.files import FileStamp
from dataprep.fingerprints import ImageFingerprint, image_fingerprint
from dataprep.jpeg_structure import surely_decodes
from dataprep.paths import UnsafePath, not_a_file, open_without_links, resolve_inside
from dataprep.recipe.model import ImagePolicy
from dataprep.sample import ImageBytes, ImageFile, ImageInput

EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
"""Formats kept as they are (MPO: a JPEG carrying further images, e.g. a phone's gain map; every
JPEG reader decodes its first)."""
EIGHT_BIT_MODES = {
    "1",
    "L",
    "LA",
    "La",
    "P",
    "PA",
    "RGB",
    "RGBA",
    "RGBa",
    "RGBX",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
}
"""Modes that convert to RGB without losing their range; others (16-bit, 32-bit, float) are re-encoded."""
SIDE_LIMITS = {"JPEG": 65_500, "WEBP": 16_383, "PNG": 2**31 - 1}
"""The longest side each output format can hold."""
METADATA_BYTES = 64 << 20
"""Room in an image file beyond its pixels (EXIF, ICC profiles, text chunks, thumbnails)."""
DRAFT_GAP = 3
"""A JPEG re-encoded smaller is decoded at a reduced scale still this many times its output size
(Pillow's `reducing_gap`: 2 is its `thumbnail` default; 3 measured no worse than a full decode)."""
RESAMPLER = "vips-lanczos3"
"""What resamples re-encoded images; it is part of a normalized part's key, so parts made by another
resampler (Pillow's Lanczos before) are made again: change it whenever resampled pixels change."""
VIPS_MAX_REDUCE = 333
"""The largest factor libvips' Lanczos-3 reduces by in one step (its kernel's size limit)."""


Stamped = tuple[str, FileStamp]
"""An image file read (its path) and its stamp: a later build re-reads it when the stamp differs."""


class ImageRejected(Exception):
    """An image that cannot go into the mixture; `reason` is the reject code; `missing` is the file
    that was looked for when the image was absent (a later build retries it once it exists);
    `stamp` is the file's, when it was refused unread (a later build retries it once it changes)."""

    def __init__(
        self, reason: str, detail: str, missing: Path | None = None, stamp: Stamped | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.missing = missing
        self.stamp = stamp


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    extension: str
    width: int
    height: int
    reencoded: bool
    fingerprint: ImageFingerprint | None = None


def file_limit(policy: ImagePolicy) -> int:
    """The largest image file read: an uncompressed image of `max_pixels` at 16 bits per channel
    with alpha (8 bytes a pixel), plus `METADATA_BYTES`. A bigger file is refused unread rather
    than held in a worker's memory whole (a 50 GB sparse file would kill it)."""
    return 8 * policy.max_pixels + METADATA_BYTES


class DeclaredRoots:
    """A source's declared image roots, resolved to real paths once (for one work unit), and the real
    path of each root an image names, looked up once per root."""

    def __init__(self, roots: list[Path]) -> None:
        self._real = {os.path.realpath(root) for root in roots}
        self._named: dict[Path, str | None] = {}

    def real(self, root: Path) -> str | None:
        """The real path of `root` when it is one of the declared roots, else None."""
        if root not in self._named:
            real = os.path.realpath(root)
            self._named[root] = real if real in self._real else None
        return self._named[root]


def load_bytes(image: ImageInput, roots: DeclaredRoots, max_bytes: int) -> tuple[bytes, Stamped | None]:
    """The encoded bytes of an image, reading files only inside the source's declared roots and of
    at most `max_bytes`, and for a file its stamp (path, size, mtime in ns) from the open file's
    `fstat`, taken before reading so a later edit shows."""
    if isinstance(image, ImageBytes):
        return image.data, None
    assert isinstance(image, ImageFile)
    real_root = roots.real(image.root)
    if real_root is None:
        raise ImageRejected("unsafe_path", f"{image.root} is not a declared root of this source")
    flags = os.O_RDONLY | os.O_NONBLOCK  # not blocking: a pipe in the file's place must not hang the worker
    descriptor = open_without_links(real_root, image.relpath, flags)
    if descriptor is None:
        path, descriptor = _open_resolved(image, flags)
    else:
        path = os.path.join(real_root, image.relpath)
    try:
        info = os.fstat(descriptor)
        if problem := not_a_file(info.st_mode):
            raise ImageRejected("image_unreadable", f"{image.relpath} {problem}", missing=Path(path))
        with open(descriptor, "rb", closefd=False) as handle:
            stamp = (path, FileStamp.of(info))
            data = _read_at_most(handle, info.st_size, max_bytes) if info.st_size <= max_bytes else b""
            if info.st_size > max_bytes or len(data) > max_bytes:  # also one growing as it is read
                size = f"{info.st_size:,} bytes" if info.st_size > max_bytes else "grew as it was read"
                detail = f"{image.relpath}: {size}, over the {max_bytes:,} bytes an image file may have"
                raise ImageRejected("image_too_large", detail, stamp=stamp)
            return data, stamp
    except OSError as error:
        raise ImageRejected("image_unreadable", f"{path}: {error}") from None
    finally:
        os.close(descriptor)


def _open_resolved(image: ImageFile, flags: int) -> tuple[str, int]:
    """The real path of an image that `open_without_links` did not open (a link inside its root, a
    missing or special file, a name that leaves the root) and a descriptor of it, or the reject."""
    try:
        path = resolve_inside(image.root, image.relpath)
    except UnsafePath as error:
        raise ImageRejected("unsafe_path", str(error)) from None
    try:
        mode = os.stat(path).st_mode
    except OSError:  # also a name too long to exist
        raise ImageRejected(
            "image_missing", f"{image.relpath} not found in {Path(image.root).name}/", missing=path
        ) from None
    if problem := not_a_file(mode):  # retried, as a missing file is, once it is a file
        raise ImageRejected("image_unreadable", f"{image.relpath} {problem}", missing=path)
    try:
        return str(path), os.open(path, flags)
    except OSError as error:
        raise ImageRejected("image_unreadable", f"{path}: {error}") from None


def _read_at_most(handle: BinaryIO, size: int, max_bytes: int) -> bytes:
    """The file's bytes, `size` of them as `fstat` said, or up to `max_bytes + 1` of a file that
    grew since; read in pieces, as `read(max_bytes + 1)` reserves that much memory at once (a
    MemoryError with a large `max_pixels`)."""
    data = handle.read(size + 1)
    while size < len(data) <= max_bytes and (more := handle.read(min(1 << 20, max_bytes + 1 - len(data)))):
        data += more
    return data


def apply_policy(data: bytes, policy: ImagePolicy, fingerprint: bool = False) -> EncodedImage:
    """Check the image (catching truncation, corruption and decompression bombs), then keep or
    re-encode; with `fingerprint`, also fingerprint the pixels just decoded. A JPEG kept as it is
    and whose markers prove that it decodes in full (`jpeg_structure.surely_decodes`: the common
    baseline file) is not decoded at all. Otherwise a JPEG is decoded at a reduced scale where that
    loses nothing kept: libjpeg still reads and entropy-decodes all of its data (and fails where a
    full decode fails), and scales in its inverse DCT. A JPEG kept as it is decodes at 1/8 scale; one
    re-encoded smaller decodes at the smallest scale of 1/2, 1/4, 1/8 still
    `DRAFT_GAP` times its output size, then is resampled (Lanczos-3, `_resized`) to it. Fingerprinted
    images are decoded whole: a fingerprint is of the image's own pixels, whatever the policy."""
    with warnings.catch_warnings(), _pillow_pixel_limit(policy.max_pixels):
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as error:
            raise ImageRejected("image_too_large", str(error)) from None
        except UnidentifiedImageError:
            raise _decode_error(data, "not a recognised image format") from None
        except (OSError, SyntaxError, ValueError) as error:
            raise _decode_error(data, str(error)) from None
        width, height = image.size
        if width * height > policy.max_pixels:
            raise ImageRejected("image_too_large", f"{width}x{height} exceeds {policy.max_pixels} pixels")
        too_big = policy.max_side is not None and max(width, height) > policy.max_side
        kept = image.format in EXTENSIONS and image.mode in EIGHT_BIT_MODES and not too_big
        fitted = None if kept else _fitted_size(width, height, policy)
        if image.format == "JPEG" and not fingerprint:  # no decode, or a smaller one (docstring)
            if kept and surely_decodes(data):
                return EncodedImage(data, EXTENSIONS[image.format], width, height, reencoded=False)
            image.draft(None, (1, 1) if kept else (DRAFT_GAP * fitted[0], DRAFT_GAP * fitted[1]))
        try:
            for frame in range(getattr(image, "n_frames", 1)):  # every frame of an animation, then the first
                image.seek(frame)
                if image.width * image.height > policy.max_pixels:
                    raise ImageRejected(
                        "image_too_large",
                        f"frame {frame}: {image.width}x{image.height} exceeds {policy.max_pixels} pixels",
                    )
                image.load()
            image.seek(0)
        except Image.DecompressionBombError as error:
            raise ImageRejected("image_too_large", str(error)) from None
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise _decode_error(data, str(error) or "a frame ends early") from None
    if kept:
        encoded = EncodedImage(data, EXTENSIONS[image.format], width, height, reencoded=False)
    else:
        encoded = _reencode(image, policy, fitted)
    if fingerprint:
        return dataclasses.replace(encoded, fingerprint=image_fingerprint(_eight_bit(image)))
    return encoded


def _decode_error(data: bytes, detail: str) -> ImageRejected:
    """A JPEG or PNG cut short is `image_truncated` wherever the cut falls (header or data)."""
    truncated = "truncated" in detail.lower() or _cut_short(data)
    return ImageRejected("image_truncated" if truncated else "image_unreadable", detail)


def _cut_short(data: bytes) -> bool:
    """A JPEG without its end-of-image marker, or a PNG without its IEND chunk."""
    if data.startswith(b"\xff\xd8\xff"):
        return not data.rstrip(b"\0").endswith(b"\xff\xd9")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return b"IEND" not in data[-12:]
    return False


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's own bomb limit follows the policy (it would refuse > 2 × its default first)."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _fitted_size(width: int, height: int, policy: ImagePolicy) -> tuple[int, int]:
    """The size an image of `width` × `height` is re-encoded at: at most `max_side` (and the
    policy format's own limit) long."""
    fmt = policy.format.upper()
    max_side = min(policy.max_side or SIDE_LIMITS[fmt], SIDE_LIMITS[fmt])
    if max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _reencode(image: Image.Image, policy: ImagePolicy, size: tuple[int, int]) -> EncodedImage:
    """The first frame in the policy's format, at `size` (from `_fitted_size`)."""
    fmt = policy.format.upper()
    image = _eight_bit(image)
    keeps_alpha = fmt in {"PNG", "WEBP"} and image.mode in {"RGBA", "LA", "P"}
    if image.mode != (mode := "RGBA" if keeps_alpha else "RGB"):
        image = image.convert(mode)
    if image.size != size:
        image = _resized(image, size)
    buffer = io.BytesIO()
    params = {"quality": policy.quality} if fmt in {"JPEG", "WEBP"} else {}
    try:
        image.save(buffer, format=fmt, **params)
    except (OSError, ValueError) as error:
        raise ImageRejected("image_unencodable", f"{fmt} cannot hold this image: {error}") from None
    return EncodedImage(buffer.getvalue(), EXTENSIONS[fmt], image.width, image.height, reencoded=True)


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` (RGB or RGBA) resampled to `size` with a Lanczos-3 filter: libvips' (its integer code,
    ~2.4× Pillow's speed) for RGB; Pillow's for RGBA, whose resize weights colours by their alpha,
    and for factors past `VIPS_MAX_REDUCE`."""
    factors = image.width / size[0], image.height / size[1]
    if image.mode != "RGB" or max(factors) > VIPS_MAX_REDUCE:
        return image.resize(size, Image.Resampling.LANCZOS)
    pixels = _libvips().Image.new_from_memory(image.tobytes(), image.width, image.height, 3, "uchar")
    resized = pixels.reduce(*factors, kernel="lanczos3")
    return Image.frombytes("RGB", (resized.width, resized.height), resized.write_to_memory())


@functools.cache
def _libvips() -> ModuleType:
    """pyvips, imported and set up at the first resample (a build's driver resamples nothing)."""
    import pyvips

    pyvips.cache_set_max(0)  # each resize is of a new image: nothing to reuse, memory to keep
    pyvips.concurrency_set(1)  # one thread: a worker process is one core's share of the build
    return pyvips


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit grayscale scaled to 8 bits (Pillow's own conversion clips it to white); 32-bit and
    float pixels have no range to scale by and are refused."""
    if image.mode in EIGHT_BIT_MODES:
        return image
    pixels = np.asarray(image)
    if image.mode.startswith("I;16") or (image.mode == "I" and pixels.min() >= 0 and pixels.max() <= 0xFFFF):
        return Image.fromarray((pixels.astype(np.uint32) >> 8).astype(np.uint8), "L")
    raise ImageRejected("image_unsupported", f"{image.mode} pixels ({pixels.dtype}) have no 8-bit equivalent")
