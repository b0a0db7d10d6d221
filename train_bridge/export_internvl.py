"""Write the official InternVL fine-tuning layout from the shards: meta JSON, one `.jsonl` per
source, images under one root per source (original bytes, named `<key>.<suffix>`).

The official trainer prepends `<image>\n` to the first turn of a single-image record that lacks it;
a record whose one placeholder sits in a later turn has it moved there, so the image is not
expanded twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dataprep.contract.manifest import load_manifest
from dataprep.contract.sample import IMAGE_PLACEHOLDER, placeholder_first
from dataprep.contract.shards import iter_samples
from dataprep.contract.store import location
from train_bridge.data import check_shards
from train_bridge.errors import BridgeError


def internvl_record(key: str, record: dict[str, Any]) -> dict[str, Any]:
    """One annotation line: `image` is a name (one image), a list (several) or absent (text)."""
    line: dict[str, Any] = {"id": record["id"]}
    names = [f"{key}.{suffix}" for suffix in record["images"]]
    sizes = record.get("image_sizes") or []
    conversations = record["conversations"]
    if len(names) == 1:
        line["image"] = names[0]
        if sizes:
            line["width"], line["height"] = sizes[0]
        if IMAGE_PLACEHOLDER not in conversations[0]["value"]:
            texts = placeholder_first([turn["value"] for turn in conversations])
            conversations = [{**turn, "value": text} for turn, text in zip(conversations, texts, strict=True)]
    elif names:
        line["image"] = names
    line["conversations"] = conversations
    return line


def export(manifest_path: str | Path, out: Path) -> dict[str, dict[str, Any]]:
    """Export every sample of the manifest's shards under `out`; return the meta written to
    `out/meta.json` (absolute roots and annotation paths, so the official trainer runs from anywhere)."""
    manifest = load_manifest(manifest_path)
    paths = manifest.shard_paths(location(manifest_path))
    check_shards(paths, [shard.bytes for shard in manifest.shards])
    out = out.resolve()
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    try:
        for shard, expected in zip(paths, (shard.samples for shard in manifest.shards), strict=True):
            count = 0
            try:
                for key, sample, blobs in iter_samples(shard):
                    source = sample.source
                    for name in (source, key, *blobs):
                        if not name or "/" in name or "\\" in name or name.startswith("."):
                            raise BridgeError(f"{shard.name}: {name!r} cannot name a file or folder")
                    if source not in files:
                        files[source] = open(out / "annotations" / f"{source}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
                        (out / "images" / source).mkdir(parents=True, exist_ok=True)
                    for suffix, data in blobs.items():
                        (out / "images" / source / f"{key}.{suffix}").write_bytes(data)
                    files[source].write(
                        json.dumps(internvl_record(key, sample.to_json()), ensure_ascii=False) + "\n"
                    )
                    lengths[source] = lengths.get(source, 0) + 1
                    count += 1
            except BridgeError:
                raise
            except Exception as error:  # a sample json or member outside the shard contract
                raise BridgeError(
                    f"{shard}, sample {count} cannot be exported ({type(error).__name__}: {error})"
                ) from error
            if count != expected:
                raise BridgeError(f"{shard}: {count} samples, manifest says {expected}")
    finally:
        for handle in files.values():
            handle.close()
    meta = {
        source: {
            "root": f"{out / 'images' / source}/",
            "annotation": str(out / "annotations" / f"{source}.jsonl"),
            "data_augment": False,
            "repeat_time": 1,
            "length": lengths[source],
        }
        for source in sorted(lengths)
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return meta
