"""Image policy: originals kept byte-exact, oversize re-encoded, bad images rejected by reason."""

from __future__ import annotations

import io
import os
import random
import socket

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dataprep.files import FileStamp
from dataprep.fixtures.draw import encode, photo
from dataprep.images import (
    VIPS_MAX_REDUCE,
    DeclaredRoots,
    ImageRejected,
    _fitted_size,
    _read_at_most,
    _resized,
    apply_policy,
    file_limit,
    load_bytes,
)
from dataprep.recipe.model import ImagePolicy
from dataprep.sample import ImageBytes, ImageFile

from helpers.pillow_decode import decodes_in_full

DEFAULT_POLICY = ImagePolicy()


def _reason(data: bytes, policy: ImagePolicy = DEFAULT_POLICY) -> str:
    with pytest.raises(ImageRejected) as caught:
        apply_policy(data, policy)
    return caught.value.reason


def test_valid_image_keeps_its_bytes():
    data = encode(photo(random.Random(1), 120, 80), "JPEG", quality=80)
    image = apply_policy(data, ImagePolicy())
    assert (image.data, image.extension, image.width, image.height, image.reencoded) == (
        data,
        "jpg",
        120,
        80,
        False,
    )


def test_oversize_is_reencoded_in_the_policy_format():
    data = encode(photo(random.Random(1), 300, 100), "PNG")
    image = apply_policy(data, ImagePolicy(max_side=60, format="webp", quality=70))
    assert (image.extension, image.width, image.height, image.reencoded) == ("webp", 60, 20, True)
    assert Image.open(io.BytesIO(image.data)).format == "WEBP"


def test_other_formats_are_converted():
    data = encode(photo(random.Random(2), 40, 30), "GIF")
    image = apply_policy(data, ImagePolicy())
    assert (image.extension, image.reencoded) == ("jpg", True)


def test_bad_images_are_rejected_with_reasons():
    jpeg = encode(photo(random.Random(3), 200, 150), "JPEG")
    assert _reason(jpeg[: len(jpeg) // 2]) == "image_truncated"
    assert _reason(b"definitely not an image") == "image_unreadable"
    bomb = encode(Image.new("L", (2000, 2000)), "PNG")
    assert _reason(bomb, ImagePolicy(max_pixels=1_000_000)) == "image_too_large"


@pytest.mark.parametrize(("fmt", "intact_tail"), [("JPEG", 1), ("PNG", 21)])
def test_a_file_cut_anywhere_after_its_signature_is_truncated(fmt, intact_tail):
    """`intact_tail`: a PNG cut only in its last checksums and IEND chunk still decodes fully (kept)."""
    data = encode(photo(random.Random(4), 120, 90), fmt)
    reasons = {_reason(data[:cut]) for cut in range(8, len(data) - intact_tail)}
    assert reasons == {"image_truncated"}


@pytest.mark.parametrize("policy", [DEFAULT_POLICY, ImagePolicy(max_side=20)], ids=["kept", "reencoded"])
@pytest.mark.parametrize(
    ("mode", "options"),
    [("RGB", {}), ("RGB", {"progressive": True}), ("RGB", {"subsampling": 0}), ("L", {"quality": 60})],
)
def test_a_damaged_jpeg_is_rejected_exactly_when_a_full_decode_fails(mode, options, policy):
    """A JPEG is checked at a reduced scale (1/8 when kept, 1/2 here when re-encoded to 20 px): bytes
    overwritten or cut out anywhere are refused exactly when decoding it at full size fails."""
    rng = random.Random(7)
    data = encode(photo(random.Random(6), 160, 120).convert(mode), "JPEG", **options)
    damaged = []
    for _ in range(120):
        changed = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            changed[rng.randrange(2, len(changed))] = rng.randrange(256)
        damaged.append(bytes(changed))
        cut = rng.randrange(2, len(data))
        damaged.append(data[:cut] + data[cut + rng.randrange(1, 50) :])
    outcomes = []
    for candidate in damaged:
        try:
            apply_policy(candidate, policy)
            outcomes.append(True)
        except ImageRejected:
            outcomes.append(False)
    assert outcomes == [decodes_in_full(candidate) for candidate in damaged]
    assert outcomes.count(False) > 20  # the damage is often fatal: the comparison says something


def test_a_jpeg_re_encoded_much_smaller_matches_a_full_decode_resampled():
    """Decoded at 1/4 scale (still 3× the output), then resampled: within a few levels of the
    full-size decode resampled with the same filter."""
    data = encode(photo(random.Random(8), 1400, 1050), "JPEG", quality=95)
    image = apply_policy(data, ImagePolicy(max_side=100, quality=95))
    assert (image.width, image.height, image.reencoded) == (100, 75, True)
    full = Image.open(io.BytesIO(data)).resize((100, 75), Image.Resampling.LANCZOS)
    output = Image.open(io.BytesIO(image.data)).convert("RGB")
    difference = [abs(a - b) for a, b in zip(output.tobytes(), full.tobytes(), strict=True)]
    assert sum(difference) / len(difference) < 3


def test_the_policy_pixel_limit_replaces_pillows_own():
    huge = io.BytesIO()
    Image.new("1", (14000, 13000)).save(huge, format="PNG")  # 182 M pixels: > 2 × Pillow's default limit
    image = apply_policy(huge.getvalue(), ImagePolicy(max_pixels=200_000_000))
    assert (image.width, image.height, image.reencoded) == (14000, 13000, False)
    assert _reason(huge.getvalue(), ImagePolicy(max_pixels=100_000_000)) == "image_too_large"
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # restored for everyone else


def test_files_are_read_only_inside_declared_roots(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"abc")
    (tmp_path / "outside.jpg").write_bytes(b"secret")
    (root / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    info = (root / "a.jpg").stat()
    stamp = (str(root / "a.jpg"), FileStamp(info.st_size, info.st_mtime_ns))
    assert load_bytes(ImageFile(root, "a.jpg"), DeclaredRoots([root]), 3) == (b"abc", stamp)
    assert load_bytes(ImageBytes(b"xyz"), DeclaredRoots([]), 3) == (b"xyz", None)
    for image, reason in [
        (ImageFile(root, "../outside.jpg"), "unsafe_path"),
        (ImageFile(root, "/etc/passwd"), "unsafe_path"),
        (ImageFile(root, "link.jpg"), "unsafe_path"),
        (ImageFile(tmp_path, "outside.jpg"), "unsafe_path"),
        (ImageFile(root, "absent.jpg"), "image_missing"),
    ]:
        with pytest.raises(ImageRejected) as caught:
            load_bytes(image, DeclaredRoots([root]), 3)
        assert caught.value.reason == reason, image


def test_a_file_name_too_long_to_exist_is_missing(tmp_path):
    with pytest.raises(ImageRejected) as caught:
        load_bytes(ImageFile(tmp_path, "x" * 300 + ".jpg"), DeclaredRoots([tmp_path]), 3)
    assert caught.value.reason == "image_missing"
    assert caught.value.missing == tmp_path / ("x" * 300 + ".jpg")


def test_a_file_over_the_limit_is_refused_unread_with_its_stamp(tmp_path):
    sparse = tmp_path / "sparse.jpg"
    with open(sparse, "wb") as handle:
        handle.truncate(50 << 30)  # 50 GB, no disk used: reading it whole kills the worker
    (tmp_path / "small.jpg").write_bytes(b"abc")
    for name, limit in [("sparse.jpg", file_limit(ImagePolicy())), ("small.jpg", 2)]:
        with pytest.raises(ImageRejected) as caught:
            load_bytes(ImageFile(tmp_path, name), DeclaredRoots([tmp_path]), limit)
        info = (tmp_path / name).stat()
        assert caught.value.reason == "image_too_large"
        assert caught.value.stamp == (str(tmp_path / name), FileStamp(info.st_size, info.st_mtime_ns))
    assert file_limit(ImagePolicy(max_pixels=10)) == 80 + (64 << 20)


def test_a_folder_pipe_or_socket_in_place_of_an_image_is_unreadable_not_missing(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")  # reading it would wait for a writer forever
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "socket.jpg"))
        for name, kind in [
            ("folder.jpg", "a folder"),
            ("pipe.jpg", "a named pipe"),
            ("socket.jpg", "a socket"),
        ]:
            with pytest.raises(ImageRejected) as caught:
                load_bytes(ImageFile(tmp_path, name), DeclaredRoots([tmp_path]), 3)
            assert (caught.value.reason, caught.value.detail) == (
                "image_unreadable",
                f"{name} is {kind}, not a file",
            )
            assert caught.value.missing == tmp_path / name  # a later build retries it once it is a file


@pytest.mark.parametrize(("fmt", "width", "limit"), [("webp", 17_000, 16_383), ("jpeg", 70_000, 65_500)])
def test_an_image_wider_than_the_output_format_allows_is_fitted_to_it(fmt, width, limit):
    wide = encode(Image.new("RGB", (width, 4), "red"), "BMP")  # BMP: always re-encoded
    image = apply_policy(wide, ImagePolicy(format=fmt))
    assert (image.width, image.reencoded) == (limit, True)
    assert Image.open(io.BytesIO(image.data)).size == (image.width, image.height)


def test_sixteen_bit_grayscale_is_scaled_to_eight_bits_not_clipped_to_white():
    ramp = Image.frombytes(
        "I;16", (256, 1), bytes(b for v in range(256) for b in (v * 257).to_bytes(2, "little"))
    )
    image = apply_policy(encode(ramp, "PNG"), ImagePolicy(format="png"))
    stored = Image.open(io.BytesIO(image.data)).convert("L")
    assert image.reencoded and list(stored.tobytes()) == list(range(256))
    floats = Image.new("F", (4, 4), 0.5)
    assert _reason(encode(floats, "TIFF")) == "image_unsupported"


def test_a_jpeg_carrying_a_second_image_is_kept_as_a_jpeg():
    first, second = photo(random.Random(4), 64, 48), photo(random.Random(5), 32, 24)
    buffer = io.BytesIO()
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    image = apply_policy(buffer.getvalue(), ImagePolicy(format="png"))
    assert (image.data, image.extension, image.reencoded) == (buffer.getvalue(), "jpg", False)


def test_an_animation_cut_after_its_first_frame_is_truncated():
    frames = [photo(random.Random(seed), 64, 48) for seed in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    whole = buffer.getvalue()
    assert apply_policy(whole, ImagePolicy()).data == whole
    assert _reason(whole[: len(whole) * 2 // 3]) == "image_truncated"


def test_a_later_frame_beyond_the_pixel_limit_is_too_large_not_a_crash():
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(
        buffer, "TIFF", save_all=True, append_images=[Image.new("RGB", (4000, 4000))]
    )
    assert _reason(buffer.getvalue(), ImagePolicy(max_pixels=1000)) == "image_too_large"


def test_a_large_file_limit_reserves_no_memory_and_a_growing_file_is_read_on(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"abc")
    limit = file_limit(ImagePolicy(max_pixels=10**12))  # 8 TB: reserving it would be a MemoryError
    assert load_bytes(ImageFile(tmp_path, "a.jpg"), DeclaredRoots([tmp_path]), limit)[0] == b"abc"
    assert _read_at_most(io.BytesIO(b"x" * 10), 3, 100) == b"x" * 10  # grew from 3 bytes to 10
    assert _read_at_most(io.BytesIO(b"x" * 10), 3, 5) == b"x" * 6  # and past the limit


def test_links_inside_the_root_are_read_and_stamped_by_their_real_path(tmp_path):
    root = tmp_path / "root"
    (root / "real" / "deep").mkdir(parents=True)
    (root / "real" / "deep" / "a.jpg").write_bytes(b"abc")
    (root / "a_link.jpg").symlink_to(root / "real" / "deep" / "a.jpg")
    (root / "folder_link").symlink_to(root / "real")
    (tmp_path / "root_link").symlink_to(root)  # the root named through a link
    target = str(root / "real" / "deep" / "a.jpg")
    info = os.stat(target)
    for image_root, relpath in [
        (root, "real/deep/a.jpg"),
        (root, "a_link.jpg"),
        (root, "folder_link/deep/a.jpg"),
        (root, "real/../real/deep/a.jpg"),
        (tmp_path / "root_link", "real/deep/a.jpg"),
    ]:
        roots = DeclaredRoots([tmp_path / "root_link"])
        data, stamp = load_bytes(ImageFile(image_root, relpath), roots, 3)
        assert (data, stamp) == (b"abc", (target, FileStamp(info.st_size, info.st_mtime_ns))), relpath


def test_a_photo_is_resampled_with_pillows_lanczos_filter_to_the_exact_size():
    """libvips' Lanczos-3 (RGB) is Pillow's filter computed in other fixed-point steps: on fine detail
    within 2 levels, ~0.25 on average (Pillow's bicubic is ~0.66 away); the output has exactly the
    fitted size, whatever the ratio."""
    noise = np.random.default_rng(9).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    rgb = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(1.2))
    ours = np.asarray(_resized(rgb, (448, 336)), dtype=int)
    pillows = np.asarray(rgb.resize((448, 336), Image.Resampling.LANCZOS), dtype=int)
    assert ours.shape == pillows.shape == (336, 448, 3)
    assert np.abs(ours - pillows).max() <= 2 and np.abs(ours - pillows).mean() < 0.35
    bicubic = np.asarray(rgb.resize((448, 336), Image.Resampling.BICUBIC), dtype=int)
    assert np.abs(bicubic - pillows).mean() > 0.5  # the bound above tells filters apart
    rng = random.Random(10)
    for _ in range(40):
        width, height = rng.randrange(30, 2000), rng.randrange(30, 2000)
        size = _fitted_size(width, height, ImagePolicy(max_side=rng.randrange(1, 30)))
        assert _resized(Image.new("RGB", (width, height)), size).size == size


def test_alpha_and_reductions_past_libvips_limit_are_resampled_by_pillow():
    """Pillow weights colour by alpha (a transparent pixel's colour does not bleed into its
    neighbours); libvips reduces by at most `VIPS_MAX_REDUCE` in one step."""
    rgba = Image.new("RGBA", (64, 8), (0, 0, 255, 255))
    rgba.paste((255, 0, 0, 0), (0, 0, 32, 8))
    assert _resized(rgba, (8, 1)).tobytes() == rgba.resize((8, 1), Image.Resampling.LANCZOS).tobytes()
    assert _resized(rgba, (8, 1)).getpixel((4, 0))[:3] == (0, 0, 255)
    wide = Image.fromarray(np.random.default_rng(11).integers(0, 256, (4, 5 * VIPS_MAX_REDUCE, 3), np.uint8))
    assert _resized(wide, (4, 1)).tobytes() == wide.resize((4, 1), Image.Resampling.LANCZOS).tobytes()


def test_re_encoding_gives_the_same_bytes_every_time():
    data = encode(photo(random.Random(12), 640, 480), "JPEG", quality=90)
    outputs = {apply_policy(data, ImagePolicy(max_side=448)).data for _ in range(3)}
    assert len(outputs) == 1
