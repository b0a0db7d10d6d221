"""Normalize one work unit: adapter records → contract JSON + checked images, in a part file.

A part is a tar holding each kept sample's final `<seq>.json` and image members, plus an
index (`.json` beside it, written last: the completion marker) listing every record read,
kept or rejected, in order, with where each kept sample's members lie in the tar. A part whose
missing images have appeared since is normalized again.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataprep.images import ImageRejected, apply_policy, load_bytes
from dataprep.recipe import ImagePolicy
from dataprep.sample import Reject, Sample, conversation_problem
from dataprep.shards import MemberLocation, canonical_json, write_atomic, write_tar
from dataprep.sources.base import Source


@dataclass(frozen=True)
class UnitSummary:
    read: int
    kept: int


def index_path(part: Path) -> Path:
    return part.with_suffix(".json")


def normalize_unit(
    adapter: Source, unit: str, entry_name: str, policy: ImagePolicy, part: Path, limit: int | None
) -> UnitSummary:
    """Read one unit through the adapter and write its part file and index."""
    records: list[dict[str, Any]] = []
    members: list[tuple[str, bytes]] = []
    roots = adapter.roots()
    for seq, record in enumerate(itertools.islice(adapter.read(unit), limit)):
        if isinstance(record, Sample) and (problem := conversation_problem(record)):
            record = Reject(record.id, "bad_conversation", problem)
        if isinstance(record, Reject):
            records.append(_reject_entry(seq, record))
            continue
        try:
            sample_json, images, converted = _sample_members(record, entry_name, roots, policy)
        except ImageRejected as rejected:
            records.append(_reject_entry(seq, Reject(record.id, rejected.reason, rejected.detail)))
            if rejected.missing is not None:
                records[-1]["missing"] = str(rejected.missing)
            continue
        stem = f"{seq:09d}"
        records.append({"seq": seq, "id": record.id, "members": [f"{stem}.json"]})
        if converted:
            records[-1]["reencoded"] = converted
        members.append((f"{stem}.json", sample_json))
        for suffix, data in images:
            records[-1]["members"].append(f"{stem}.{suffix}")
            members.append((f"{stem}.{suffix}", data))
    locations = {location.name: location for location in write_tar(part, members)}
    for entry in records:
        if "members" in entry:
            entry["members"] = [_location_json(locations[name]) for name in entry["members"]]
    index = {"unit": unit, "records": records}
    write_atomic(index_path(part), canonical_json(index))
    return UnitSummary(read=len(records), kept=sum("members" in entry for entry in records))


def _sample_members(
    sample: Sample, entry_name: str, roots: list[Path], policy: ImagePolicy
) -> tuple[bytes, list[tuple[str, bytes]], int]:
    encoded = [apply_policy(load_bytes(image, roots), policy) for image in sample.images]
    single = len(encoded) == 1
    suffixes = [
        image.extension if single else f"{index}.{image.extension}" for index, image in enumerate(encoded)
    ]
    document = {
        "source": entry_name,
        "id": sample.id,
        "images": suffixes,
        "image_sizes": [[image.width, image.height] for image in encoded],
        "conversations": [turn.to_json() for turn in sample.conversations],
        "meta": sample.meta,
    }
    images = [(suffix, image.data) for suffix, image in zip(suffixes, encoded, strict=True)]
    return canonical_json(document), images, sum(image.reencoded for image in encoded)


def _reject_entry(seq: int, reject: Reject) -> dict[str, Any]:
    return {"seq": seq, "id": reject.id, "reason": reject.reason, "detail": reject.detail}


def _location_json(location: MemberLocation) -> list[Any]:
    return [location.name.partition(".")[2], location.offset, location.size]


def load_index(part: Path) -> dict[str, Any]:
    return json.loads(index_path(part).read_bytes())


def found_since(index: dict[str, Any]) -> bool:
    """Whether an image this part's index recorded as missing exists now (the part must be redone)."""
    return any(Path(record["missing"]).is_file() for record in index["records"] if "missing" in record)
