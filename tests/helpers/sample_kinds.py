"""Builds whose first shard opens with one kind of sample: the case where readers that guess a schema
from the first samples (Hugging Face `datasets` looks at five) go wrong.

Every build holds all kinds (single jpg, png, webp, several images of mixed formats, text only) from
one `conversations` source; the records the mixture plan puts first in shard 0 are of the opening
kind. The plan depends only on the count of kept samples and the seed, so it is computed beforehand.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from dataprep.contract.shards import iter_samples
from dataprep.engine.runner import InProcessRunner
from dataprep.fixtures.draw import encode, photo
from dataprep.mixture import Component, plan

from helpers.builds import build_recipe

KINDS = ("jpg", "png", "webp", "multi", "text")
SAMPLES = 20
SHARD_SIZE = 8
SEED = 7  # the seed recipe_yaml writes
OPENING = 5  # samples `datasets` infers its schema from


def kind_of(suffixes: list[str]) -> str:
    """The kind of a sample by its image member suffixes."""
    if not suffixes:
        return "text"
    return suffixes[0] if len(suffixes) == 1 else "multi"


def _images(kind: str, index: int, rng: random.Random, folder: Path) -> list[str]:
    formats = {"jpg": ["JPEG"], "png": ["PNG"], "webp": ["WEBP"], "multi": ["JPEG", "PNG"], "text": []}
    names = []
    for position, fmt in enumerate(formats[kind] + (["WEBP"] if kind == "multi" and index % 2 else [])):
        name = f"{index:03d}_{position}.{fmt.lower().replace('jpeg', 'jpg')}"
        (folder / name).write_bytes(encode(photo(rng), fmt, **({"lossless": True} if fmt == "WEBP" else {})))
        names.append(name)
    return names


def write_source(root: Path, opener: str) -> None:
    """`root/mine/train.jsonl` + images: SAMPLES records, the first OPENING of shard 0 of kind `opener`,
    the others cycling through every kind; meta keys differ by kind (the adapter's `image`,
    `width`/`height` on some)."""
    first_shard = plan([Component("mine", SAMPLES, "all", 1)], SHARD_SIZE, SEED)[0]
    openers = set(first_shard.indices[:OPENING].tolist())
    rng = random.Random(opener)
    folder = root / "mine" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    others = iter(KINDS * SAMPLES)
    with open(root / "mine" / "train.jsonl", "w", encoding="utf-8") as handle:
        for index in range(SAMPLES):
            kind = opener if index in openers else next(others)
            names = _images(kind, index, rng, folder)
            prompt = "".join("<image>\n" for _ in names) + f"What is in sample {index}?"
            record: dict[str, Any] = {
                "id": f"{kind}-{index}",
                "conversations": [
                    {"from": "human", "value": prompt},
                    {"from": "gpt", "value": f"答 {index}"},
                ],
            }
            if names:
                record["image"] = names[0] if len(names) == 1 else names
            if index % 3 == 0:
                record |= {"width": 96, "height": 72}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def build_opening_with(tmp_path: Path, opener: str) -> Path:
    """A build (in process) whose first shard opens with OPENING samples of kind `opener`; its folder."""
    write_source(tmp_path / "data", opener)
    out, _ = build_recipe(
        tmp_path, tmp_path / "data", name=f"opens-{opener}", runner=InProcessRunner(), shard_size=SHARD_SIZE
    )
    return out


def shard_samples(out: Path) -> dict[str, dict[str, Any]]:
    """What the shards hold, read by the contract: key → its json, and its images by suffix."""
    return {
        key: {"json": sample.to_json(), "images": images}
        for shard in sorted((out / "shards").glob("*.tar"))
        for key, sample, images in iter_samples(shard)
    }
