"""Normalize one work unit: adapter records → contract JSON + checked images, in a part file.

A part is a tar holding each kept sample's final `<seq>.json` and image members, plus an
index (`.json` beside it, written last: the completion marker) listing every record read,
kept or rejected, in order, with where each kept sample's members lie in the tar and a digest
of them. An image file kept as it is stays where it is: its member in the part is a
reference to it (`part_members`), and shards copy it from there; so each kept image is written
once, into its shard. Beside them, `.inputs.json` stamps every image file read and names every one
found missing: a part is normalized again when one of those files changed or appeared.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataprep.contract.sample import ShardSample, conversation_problem
from dataprep.contract.shards import MemberLocation, sample_members, split_member_name, write_tar
from dataprep.files import FileStamp, canonical_json, write_atomic
from dataprep.images import DeclaredRoots, ImageRejected, apply_policy, file_limit, load_bytes
from dataprep.part_members import image_reference
from dataprep.recipe.model import ImagePolicy
from dataprep.sample import ImageFile, Reject, Sample
from dataprep.sources.base import Source

FINGERPRINTS = "fingerprints"
"""The meta (and index entry) key of a sample's image fingerprints, when the recipe asks for them."""
PART_FORMAT = 7  # parts written by other normalization code (layout, image handling) are not reused


@dataclass(frozen=True)
class UnitSummary:
    read: int
    kept: int


def index_path(part: Path) -> Path:
    return part.with_suffix(".json")


def inputs_path(part: Path) -> Path:
    return part.with_suffix(".inputs.json")


def normalize_unit(
    adapter: Source,
    unit: str,
    label: str,
    policy: ImagePolicy,
    part: Path,
    limit: int | None,
    fingerprints: bool = False,
) -> UnitSummary:
    """Read one unit through the adapter and write its part file, inputs and index. Samples go
    into the part as they are made: a worker holds one sample's images, not the unit's. With
    `fingerprints`, each image's fingerprints (from the pixels decoded to check it) go into the
    sample's `meta.fingerprints` and its index entry."""
    _require_utf8_file_names()
    records: list[dict[str, Any]] = []
    stamps: dict[str, FileStamp] = {}
    missing: set[str] = set()
    roots = DeclaredRoots(adapter.roots())

    def members() -> Iterator[tuple[str, bytes]]:
        for seq, record in enumerate(itertools.islice(adapter.read(unit), limit)):
            if isinstance(record, Sample):
                record = _unwritable(record) or record
            if isinstance(record, Sample) and (problem := conversation_problem(record)):
                record = Reject(record.id, "bad_conversation", problem)
            if isinstance(record, Sample):
                record = _empty_reply(record) or record
            if isinstance(record, Reject):
                records.append(_reject_entry(seq, record))
                continue
            stem = f"{seq:09d}"
            try:
                stored, reencoded, prints = _sample_members(
                    record, stem, label, roots, policy, stamps, fingerprints
                )
            except ImageRejected as rejected:
                records.append(_reject_entry(seq, Reject(record.id, rejected.reason, rejected.detail)))
                if rejected.missing is not None:
                    missing.add(str(rejected.missing))
                if rejected.stamp is not None:
                    path, stamp = rejected.stamp
                    stamps[path] = stamp
                continue
            names = [name for name, _ in stored]
            records.append({"seq": seq, "id": record.id, "members": names, "digest": _digest(stored)})
            if reencoded:
                records[-1]["reencoded"] = reencoded
            if prints is not None:
                records[-1][FINGERPRINTS] = prints
            yield from stored

    locations = {location.name: location for location in write_tar(part, members())}
    for entry in records:
        if "members" in entry:
            entry["members"] = [_location_json(locations[name]) for name in entry["members"]]
    files = [[path, *stamp.to_json()] for path, stamp in sorted(stamps.items())]
    inputs = {"files": files, "missing": sorted(missing)}
    write_atomic(inputs_path(part), canonical_json(inputs))
    index = {"unit": unit, "records": records}
    write_atomic(index_path(part), canonical_json(index))
    return UnitSummary(read=len(records), kept=sum("members" in entry for entry in records))


def _require_utf8_file_names() -> None:
    """Records name files in UTF-8; a Python encoding file names otherwise (a C locale with
    PYTHONUTF8=0, a Latin-1 locale) would reject or miss files that exist: refuse to read."""
    encoding = sys.getfilesystemencoding()
    if encoding != "utf-8":
        raise OSError(
            f"this Python encodes file names as {encoding}, not UTF-8: run it with PYTHONUTF8=1 "
            "or a UTF-8 locale (LANG=C.UTF-8)"
        )


def _empty_reply(sample: Sample) -> Reject | None:
    """The reject of a sample with an empty or whitespace-only gpt turn (it would train an empty
    target), else None."""
    for index, turn in enumerate(sample.conversations):
        if turn.role == "gpt" and not turn.value.strip():
            return Reject(sample.id, "empty_reply", f"turn {index} (gpt) is empty or whitespace")
    return None


def _unwritable(sample: Sample) -> Reject | None:
    """The reject of a sample whose text, meta or image names cannot be written as JSON, else None."""
    names = [image.relpath for image in sample.images if isinstance(image, ImageFile)]
    try:
        canonical_json([sample.id, [turn.to_json() for turn in sample.conversations], sample.meta, names])
    except UnicodeEncodeError as error:
        character = error.object[error.start : error.end]
        return Reject(sample.id, "bad_text", f"text holds {character!r}, a lone surrogate (not Unicode text)")
    except ValueError as error:
        return Reject(
            sample.id, "bad_record", f"a number JSON cannot hold (NaN or beyond double range): {error}"
        )
    return None


def _sample_members(
    sample: Sample,
    stem: str,
    label: str,
    roots: DeclaredRoots,
    policy: ImagePolicy,
    stamps: dict[str, FileStamp],
    fingerprints: bool,
) -> tuple[list[tuple[str, bytes]], int, list[dict[str, str]] | None]:
    """The sample's tar members (`<stem>.json`, then its images) as its part stores them (an image file
    kept as it is, by reference), how many images were re-encoded and, with `fingerprints`, each
    image's; every image file read is stamped into `stamps`, also when it is then rejected."""
    encoded = []
    stored: list[bytes | None] = [None]  # the json member is stored as it is
    for image in sample.images:
        data, stamp = load_bytes(image, roots, file_limit(policy))
        if stamp is not None:
            path, file_stamp = stamp
            stamps[path] = file_stamp
        encoded.append(apply_policy(data, policy, fingerprints))
        reference = None
        if stamp is not None and not encoded[-1].reencoded:  # an image file kept as it is
            reference = image_reference(str(roots.real(image.root)), *stamp)
        stored.append(reference)
    single = len(encoded) == 1
    suffixes = [
        image.extension if single else f"{index}.{image.extension}" for index, image in enumerate(encoded)
    ]
    prints = [image.fingerprint.to_json() for image in encoded if image.fingerprint] if fingerprints else None
    shard_sample = ShardSample(
        source=label,
        id=sample.id,
        images=suffixes,
        image_sizes=[[image.width, image.height] for image in encoded],
        conversations=sample.conversations,
        meta=sample.meta if prints is None else {**sample.meta, FINGERPRINTS: prints},
    )
    members = sample_members(stem, shard_sample, [image.data for image in encoded])
    in_part = [
        (name, data if reference is None else reference)
        for (name, data), reference in zip(members, stored, strict=True)
    ]
    return in_part, sum(image.reencoded for image in encoded), prints


def _digest(members: list[tuple[str, bytes]]) -> str:
    """What a shard copies of one sample, as its part holds it: its members' suffixes and bytes, an
    image file's reference for the file's bytes (its path, size and mtime, which the shard job
    checks, stand for them: hashing each kept image cost a sixth of normalizing it). Shards are
    reused by it."""
    digest = hashlib.sha256()
    for name, data in members:
        digest.update(f"{split_member_name(name)[1]} {len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()[:32]


def _reject_entry(seq: int, reject: Reject) -> dict[str, Any]:
    """A reject as the part's index records it, its texts escaped so that it can always be written."""
    return {"seq": seq, **Reject(_escaped(reject.id), reject.reason, _escaped(reject.detail)).to_json()}


def _escaped(text: str) -> str:
    """`text` with any lone surrogate written as `\\udXXX`, so that a reject can always be recorded."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _location_json(location: MemberLocation) -> list[Any]:
    return [split_member_name(location.name)[1], location.offset, location.size]


def load_index(part: Path) -> dict[str, Any]:
    return json.loads(index_path(part).read_bytes())


def inputs_changed(part: Path) -> bool:
    """Whether an image file this part read has changed or gone, or one it missed exists now."""
    inputs = json.loads(inputs_path(part).read_bytes())
    if not all(FileStamp.from_json(stamp).matches(path) for path, *stamp in inputs["files"]):
        return True
    return any(os.path.isfile(path) for path in inputs["missing"])
