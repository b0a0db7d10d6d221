"""What the ecosystem's readers are given beside the data: a dataset card and a wids shard index.

The card (`README.md`) is the Hugging Face Hub's format: YAML front matter whose `configs` name the
data files (so `datasets.load_dataset(<folder>)` reads only them) and whose `dataset_info.features`
declare every column (so no reader guesses a schema from the first samples), then the mixture's
sources, counts, licences, citations and the one-line read for each reader. Bytes depend only on the
manifest's content: no timestamps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from dataprep.contract.manifest import Manifest, ReaderFile
from dataprep.contract.shards import member_locations, split_member_name
from dataprep.files import canonical_json, write_unless_same

CARD = "README.md"
WIDS_INDEX = "wids.json"
SHARD_FILES = "shards/*.tar"

STRING = {"_type": "Value", "dtype": "string"}
TURNS = {"_type": "List", "feature": {"from": STRING, "value": STRING}}
SIZES = {"_type": "List", "feature": {"_type": "List", "feature": {"_type": "Value", "dtype": "int64"}}}
JSON = {"_type": "Json"}
IMAGE = {"_type": "Image"}
SAMPLE_JSON = {
    "source": STRING,
    "id": STRING,
    "images": {"_type": "List", "feature": STRING},
    "image_sizes": SIZES,
    "conversations": TURNS,
    "meta": JSON,
}
"""A shard sample's json member as `datasets` features (`Features.to_dict()` form); `meta` varies by
source, so it is arbitrary JSON."""

SHARD_READS = """\
```python
import glob, json
out = "."  # this folder

import datasets  # every sample, each image suffix a column (None where a sample has none)
ds = datasets.load_dataset(out, split="train")
ds = datasets.load_dataset("webdataset", data_files=f"{out}/shards/*.tar", split="train",
                           features=datasets.load_dataset_builder(out).info.features)

import ray.data  # one row per sample: its key, its json text, its images' bytes in order
ds = ray.data.read_webdataset(f"{out}/shards", file_extensions=["tar"], decoder=lambda s: {
    "__key__": s["__key__"], "json": s["json"].decode(),
    "images": tuple(s[x] for x in json.loads(s["json"])["images"])})

import webdataset as wds  # (sample json, [PIL images in order])
ds = wds.WebDataset(sorted(glob.glob(f"{out}/shards/*.tar")), shardshuffle=False).decode("pil").map(
    lambda s: (s["json"], [s[x] for x in s["json"]["images"]]))

import wids  # random access: ds[i] is {".json": ..., "." + suffix: image, ...}
ds = wids.ShardListDataset(f"{out}/wids.json")
```
"""


def image_suffixes(shards: Iterable[Path]) -> list[str]:
    """Every image member suffix the shards hold (`jpg`, `0.png`, ...), sorted; read from the sidecar
    indexes (the tar headers where a sidecar does not describe its shard)."""
    suffixes = {
        split_member_name(location.name)[1] for shard in shards for location in member_locations(shard)
    }
    return sorted(suffixes - {"json"})


def shard_features(suffixes: Iterable[str]) -> dict[str, Any]:
    """The columns `datasets`' webdataset builder makes of the shards: the key, the json member, one
    image column per member suffix."""
    return {"__key__": STRING, "json": SAMPLE_JSON, **{suffix: IMAGE for suffix in suffixes}}


def card_features(features: dict[str, Any]) -> list[dict[str, Any]]:
    """`Features.to_dict()` form → the card's YAML list (`dataset_info.features`)."""
    return [{"name": name, **_card_type(feature)} for name, feature in features.items()]


def _card_type(feature: dict[str, Any]) -> dict[str, Any]:
    kind = feature.get("_type")
    if kind is None:  # a struct
        return {"struct": card_features(feature)}
    if kind == "Value":
        return {"dtype": feature["dtype"]}
    if kind in ("Image", "Json"):
        return {"dtype": kind.lower()}
    if kind == "List":
        inner = _card_type(feature["feature"])
        if list(inner) in (["dtype"], ["struct"]):  # as `datasets` writes it: `list: int64`, `list: [fields]`
            return {"list": next(iter(inner.values()))}
        return {"list": inner}
    raise ValueError(f"no card form for feature type {kind}")


def dataset_card(manifest: Manifest, data_files: str, features: dict[str, Any], reads: str) -> bytes:
    """The card of `manifest`'s mixture as stored at `data_files` (a glob relative to the card) with
    `features`; `reads` is the markdown that shows how to read it."""
    front = {
        "pretty_name": manifest.name,
        "license": "other",
        "task_categories": ["image-text-to-text"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": "train", "path": data_files}],
                "default": True,
            }
        ],
        "dataset_info": {"features": card_features(features)},
    }
    totals = manifest.totals
    rows = [
        f"| {s.name} | `{s.source}` v{s.adapter_version} | {s.in_mixture:,} | {s.share:.2%} | {s.licence} |"
        for s in manifest.sources
    ]
    citations = [f"- **{s.name}**: {s.citation}" for s in manifest.sources if s.citation]
    body = [
        f"# {manifest.name}",
        "",
        f"A vision-language SFT mixture built by dataprep {manifest.tool_version} from the recipe "
        f"`{manifest.name}` (sha256 `{manifest.recipe_sha256}`, seed {manifest.seed}"
        + (f", a trial limited to {manifest.limit} records per source" if manifest.limit else "")
        + f"): {totals.samples:,} samples in {totals.shards:,} shards, {totals.bytes:,} bytes.",
        "Each sample is a conversation (`human`/`gpt` turns, one `<image>` per image) with its images, "
        "its source, its original id and its provenance (`meta`).",
        "",
        "## Sources",
        "",
        "| source | adapter | samples | share | licence |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Strictest terms of the mixture: **{manifest.strictest_terms}**. Each component stays under its "
        "publisher's licence; check them before sharing or training.",
        "",
        "## Reading it",
        "",
        reads.rstrip("\n"),
        "",
        "## Citations",
        "",
        *(citations or ["No citation is known for these sources; see their publishers."]),
    ]
    front_matter = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)
    return (f"---\n{front_matter}---\n\n" + "\n".join(body) + "\n").encode("utf-8")


def wids_index(manifest: Manifest) -> bytes:
    """The wids shard index (`wids.ShardListDataset` reads it): each shard's URL relative to this
    file, its sample count and size."""
    shardlist = [
        {"url": shard.path, "nsamples": shard.samples, "filesize": shard.bytes} for shard in manifest.shards
    ]
    index = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": manifest.name,
        "shardlist": shardlist,
    }
    return canonical_json(index)


def write_reader_files(out: Path, manifest: Manifest) -> list[ReaderFile]:
    """Write the card and the wids index of the build in `out` (files already so are left alone)."""
    suffixes = image_suffixes(out / shard.path for shard in manifest.shards)
    card = dataset_card(manifest, SHARD_FILES, shard_features(suffixes), SHARD_READS)
    files = {CARD: card, WIDS_INDEX: wids_index(manifest)}
    for name, data in files.items():
        write_unless_same(out / name, data)
    return [reader_file(name, data) for name, data in files.items()]


def reader_file(path: str, data: bytes) -> ReaderFile:
    return ReaderFile(path=path, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
