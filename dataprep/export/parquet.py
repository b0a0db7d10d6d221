"""`dataprep export parquet`: a build as Hub-ready Parquet files with its dataset card.

One file per shard (`data/<shard name>.parquet`) in row groups of `ROW_GROUP_ROWS` samples (`datasets`'
batch for images; the Hub's viewer reads a row group at a time). Columns: `key`,
`source`, `id`, `images` (a list of images), `image_sizes`, `conversations` (`[{from, value}]`) and
`meta` (JSON); the schema carries these `datasets` features, so `load_dataset("parquet", ...)` needs
nothing else, and the card (`README.md`) names `data/*.parquet` for `load_dataset(<folder>)`.
`export.json` records the files an export wrote: a later export into the folder replaces them (and
rewrites none that would come out the same), and refuses a folder holding anything else.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataprep.card import CARD, IMAGE, JSON, SIZES, STRING, TURNS, dataset_card
from dataprep.contract.manifest import Manifest, load_manifest
from dataprep.contract.sample import ShardSample
from dataprep.contract.shards import iter_samples
from dataprep.files import PARTIAL_SUFFIX, canonical_json, replace_unless_same, write_unless_same

ROW_GROUP_ROWS = 100
DATA = "data"
RECORD = "export.json"
FEATURES = {
    "key": STRING,
    "source": STRING,
    "id": STRING,
    "images": {"_type": "List", "feature": IMAGE},
    "image_sizes": SIZES,
    "conversations": TURNS,
    "meta": JSON,
}
"""The columns as `datasets` features (`Features.to_dict()` form)."""

READS = """\
```python
import datasets
out = "."  # this folder
ds = datasets.load_dataset(out, split="train")
ds = datasets.load_dataset("parquet", data_files=f"{out}/data/*.parquet", split="train")
```
"""


class ExportError(Exception):
    """An export refused before anything is written (a bad `--out`); the message says why."""


class UnreadableShard(Exception):
    """A shard of the build that cannot be read as the contract has it; the message names it."""


def arrow_schema() -> pa.Schema:
    """The files' schema, with the `datasets` features in its metadata."""
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    fields = [
        ("key", pa.string()),
        ("source", pa.string()),
        ("id", pa.string()),
        ("images", pa.list_(image)),
        ("image_sizes", pa.list_(pa.list_(pa.int64()))),
        ("conversations", pa.list_(turn)),
        ("meta", pa.json_()),
    ]
    metadata = {"huggingface": json.dumps({"info": {"features": FEATURES}}, sort_keys=True)}
    return pa.schema(fields, metadata=metadata)


def previous_export(out: Path) -> list[str]:
    """The files an earlier export wrote in `out` (none for a new or empty folder); raises
    ExportError for a file, or a folder holding anything else."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file, not a folder")
    if not out.is_dir():
        return []
    present = sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if not path.is_dir())
    listed: list[str] = []
    if RECORD in present:
        try:
            listed = json.loads((out / RECORD).read_bytes())["files"]
        except (ValueError, KeyError, TypeError):
            raise ExportError(f"--out {out}: {RECORD} is not a dataprep export record") from None
    ours = {RECORD, *listed, *(name + PARTIAL_SUFFIX for name in listed)}
    foreign = [name for name in present if name not in ours]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ExportError(
            f"--out {out} holds files that are not a dataprep export ({foreign[0]}{more}): "
            "choose a new or empty folder"
        )
    return listed


def _record(out: Path, manifest: Manifest, files: list[str]) -> None:
    record = {"kind": "parquet", "build": manifest.content_sha256, "files": sorted(set(files))}
    write_unless_same(out / RECORD, canonical_json(record))


def _tables(shard: Path, schema: pa.Schema) -> Iterator[pa.Table]:
    """The shard's samples as tables of at most ROW_GROUP_ROWS rows, in stored order."""
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for key, sample, images in _samples(shard):
        columns["key"].append(key)
        columns["source"].append(sample.source)
        columns["id"].append(sample.id)
        columns["images"].append([{"bytes": images[s], "path": f"{key}.{s}"} for s in sample.images])
        columns["image_sizes"].append(sample.image_sizes)
        columns["conversations"].append([turn.to_json() for turn in sample.conversations])
        columns["meta"].append(canonical_json(sample.meta).decode("utf-8"))
        if len(columns["key"]) == ROW_GROUP_ROWS:
            yield pa.table([pa.array(columns[f.name], f.type) for f in schema], schema=schema)
            columns = {name: [] for name in schema.names}
    if columns["key"]:
        yield pa.table([pa.array(columns[f.name], f.type) for f in schema], schema=schema)


def _samples(shard: Path) -> Iterator[tuple[str, ShardSample, dict[str, bytes]]]:
    """The shard's samples; a broken tar or sample is an UnreadableShard naming the shard."""
    try:
        yield from iter_samples(shard)
    except (tarfile.TarError, ValueError) as error:  # SampleError, a bad json or member set
        raise UnreadableShard(f"{shard}: not a readable shard ({error})") from None


def write_parquet(shard: Path, path: Path) -> None:
    """The shard's samples as one Parquet file at `path`, unless it already holds these bytes."""
    schema = arrow_schema()
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(partial, "wb") as handle:
            with pq.ParquetWriter(handle, schema) as writer:
                for table in _tables(shard, schema):
                    writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    replace_unless_same(partial, path)


def export_parquet(manifest_path: Path, out: Path) -> list[str]:
    """Export the build of `manifest_path` into `out`; return the files written, card last."""
    manifest = load_manifest(manifest_path, verified=True)
    previous = previous_export(out)
    names = [f"{DATA}/{Path(shard.path).stem}.parquet" for shard in manifest.shards]
    files = [*names, CARD]
    out.mkdir(parents=True, exist_ok=True)
    _record(out, manifest, [*previous, *files])  # a kill from here on leaves only listed files
    for name, shard in zip(names, manifest.shard_paths(manifest_path), strict=True):
        write_parquet(shard, out / name)
    write_unless_same(out / CARD, dataset_card(manifest, f"{DATA}/*.parquet", FEATURES, READS))
    for stale in sorted(set(previous) - set(files)):
        (out / stale).unlink(missing_ok=True)
    _record(out, manifest, files)
    return files
