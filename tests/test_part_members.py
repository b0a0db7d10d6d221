"""part_members: an image file kept as it is lives in its part as a reference, read from the file only
while it is the file that was checked, and never through a link or from outside its root."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataprep.contract.shards import MemberLocation, iter_tar, write_tar
from dataprep.files import FileStamp
from dataprep.normalize import inputs_changed, load_index, normalize_unit
from dataprep.part_members import (
    REFERENCE_PREFIX,
    ImageFileChanged,
    PartReader,
    UndeclaredRoot,
    image_reference,
    real_roots,
)
from dataprep.recipe.model import ImagePolicy
from dataprep.sources.conversations import Conversations


def chat(question: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": "Hello"}]


def noise_png(path: Path, seed: int, side: int = 128) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8)
    Image.fromarray(pixels).save(path)
    return path.read_bytes()


def one_image_part(tmp_path: Path, policy: ImagePolicy) -> tuple[Path, Path, MemberLocation]:
    """A unit of one sample with `images/sub/a.png` (128 × 128 noise, ~49 KB), normalized into a part;
    the part, the image file and the location of the image's member in the part."""
    (tmp_path / "images" / "sub").mkdir(parents=True)
    noise_png(tmp_path / "images" / "sub" / "a.png", 0)
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"id": "a", "image": "sub/a.png", "conversations": chat("Hi")})
    )
    source = Conversations(tmp_path, Conversations.Options(file="a.jsonl", image_root="images"))
    part = tmp_path / "parts" / "part.tar"
    normalize_unit(source, source.units()[0], "entry", policy, part, None)
    [record] = load_index(part)["records"]
    suffix, offset, size = record["members"][1]
    return part, tmp_path / "images" / "sub" / "a.png", MemberLocation(suffix, offset, size)


def read(part: Path, location: MemberLocation) -> bytes:
    """The member, read as a build whose one source declares `images/` beside the part's folder."""
    with PartReader(real_roots([part.parent.parent / "images"])) as reader:
        return reader.read(part, location)


def test_an_image_file_kept_as_it_is_is_referred_to_not_copied_into_the_part(tmp_path: Path) -> None:
    part, image, location = one_image_part(tmp_path, ImagePolicy())
    stored = dict(iter_tar(part))["000000000.png"]
    assert stored.startswith(REFERENCE_PREFIX) and len(stored) < 300  # not the ~49 KB of the file
    assert read(part, location) == image.read_bytes()
    assert part.stat().st_size < image.stat().st_size / 4


def test_a_reencoded_image_is_held_in_the_part(tmp_path: Path) -> None:
    part, _, location = one_image_part(tmp_path, ImagePolicy(max_side=32, format="png"))
    data = read(part, location)
    assert not data.startswith(REFERENCE_PREFIX) and data == dict(iter_tar(part))["000000000.png"]
    assert Image.open(io.BytesIO(data)).size == (32, 32)  # re-encoded from the 128 × 128 file


@pytest.mark.parametrize("change", ["rewritten", "same_size_touched", "removed", "truncated"])
def test_an_image_file_changed_after_its_check_is_refused_and_its_part_normalized_again(
    tmp_path: Path, change: str
) -> None:
    part, image, location = one_image_part(tmp_path, ImagePolicy())
    before = os.stat(image)
    if change == "rewritten":
        noise_png(image, 1, side=129)
    elif change == "same_size_touched":  # the same size, other bytes: its mtime tells
        image.write_bytes(bytes(reversed(image.read_bytes())))
        os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    elif change == "removed":
        image.unlink()
    else:
        os.truncate(image, 100)
    with pytest.raises(ImageFileChanged, match=str(image)):
        read(part, location)
    assert inputs_changed(part)  # the next build checks the sample again


def test_a_link_put_in_the_image_files_place_is_not_followed(tmp_path: Path) -> None:
    part, image, location = one_image_part(tmp_path, ImagePolicy())
    outside = tmp_path / "secret.png"
    outside.write_bytes(image.read_bytes())
    stat = os.stat(image)
    image.unlink()
    image.symlink_to(outside)  # the same bytes, size and mtime, but outside the declared root
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns), follow_symlinks=False)
    os.utime(outside, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ImageFileChanged, match="a link stands in its path"):
        read(part, location)


def test_a_folder_swapped_for_a_link_out_of_the_root_is_not_followed(tmp_path: Path) -> None:
    part, _, location = one_image_part(tmp_path, ImagePolicy())
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "images" / "sub").rename(elsewhere)  # the very file, size and mtime kept, now outside
    (tmp_path / "images" / "sub").symlink_to(elsewhere)
    with pytest.raises(ImageFileChanged, match="a link stands in its path"):
        read(part, location)


def test_a_pipe_put_in_the_image_files_place_is_refused_without_waiting(tmp_path: Path) -> None:
    part, image, location = one_image_part(tmp_path, ImagePolicy())
    image.unlink()
    os.mkfifo(image)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            read(part, location)
        except BaseException as error:  # recorded for the assertion below
            outcome.append(error)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "reading a pipe in the image's place hung"
    assert len(outcome) == 1 and isinstance(outcome[0], ImageFileChanged)


def test_a_reference_to_a_root_no_source_declares_is_not_followed(tmp_path: Path) -> None:
    """A work folder altered by hand (or copied from another build) cannot make a build read other files."""
    part, image, location = one_image_part(tmp_path, ImagePolicy())
    with (
        PartReader(real_roots([tmp_path / "other"])) as reader,
        pytest.raises(UndeclaredRoot, match="no root"),
    ):
        reader.read(part, location)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for shards")
    forged = image_reference(str(tmp_path), str(secret), FileStamp.of(os.stat(secret)))
    forged_part = tmp_path / "parts" / "forged.tar"
    [forged_location] = write_tar(forged_part, [("000000000.png", forged)])
    with pytest.raises(UndeclaredRoot, match=str(tmp_path)):
        read(forged_part, forged_location)  # the part's own root is declared; the reference's is not
    assert read(part, location) == image.read_bytes()


def test_a_referenced_files_digest_follows_its_stamp_a_held_images_its_bytes(tmp_path: Path) -> None:
    """A kept file is not hashed again to normalize it: its path, size and mtime stand for its bytes."""
    for policy, follows_stamp in [(ImagePolicy(), True), (ImagePolicy(max_side=32, format="png"), False)]:
        folder = tmp_path / str(follows_stamp)
        folder.mkdir()
        part, image, _ = one_image_part(folder, policy)
        [before] = load_index(part)["records"]
        info = os.stat(image)
        os.utime(image, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # the same bytes, touched
        source = Conversations(folder, Conversations.Options(file="a.jsonl", image_root="images"))
        normalize_unit(source, source.units()[0], "entry", policy, part, None)
        [after] = load_index(part)["records"]
        assert (before["digest"] != after["digest"]) is follows_stamp
