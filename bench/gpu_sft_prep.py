"""Prepare inputs for bench/gpu_sft.sh without Ray: a ByteLevel BPE tokenizer with the ChatML and
image tokens, and synthetic contract-conformant shards + manifest (640×480 JPEG photos,
single- and multi-turn conversations of a few hundred tokens)."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from dataprep.contract.manifest import Manifest
from dataprep.contract.sample import ShardSample, Turn
from dataprep.contract.shards import write_samples
from dataprep.files import sha256_file
from dataprep.fixtures.tokenizer import write_chat_tokenizer
from train_bridge.template import IM_END, SPECIAL_TOKENS

WORDS = [
    "the",
    "a",
    "chart",
    "bar",
    "value",
    "year",
    "total",
    "shows",
    "image",
    "photo",
    "person",
    "people",
    "car",
    "street",
    "table",
    "page",
    "text",
    "title",
    "label",
    "colour",
    "red",
    "blue",
    "green",
    "highest",
    "lowest",
    "between",
    "how",
    "many",
    "what",
    "which",
    "describe",
    "answer",
]


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def photo(rng: random.Random) -> bytes:
    image = Image.effect_noise((640, 480), 40).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x, y = rng.randrange(600), rng.randrange(440)
        draw.ellipse(
            [x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 200)],
            fill=tuple(rng.randrange(256) for _ in range(3)),
        )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def shards(out: Path, samples: int, per_shard: int, rng: random.Random) -> Path:
    reports = []
    for first in range(0, samples, per_shard):
        written = []
        count = min(per_shard, samples - first)
        for index in range(first, first + count):
            turns = rng.choice([1, 1, 2, 3])
            conversations = []
            for turn in range(turns):
                prefix = "<image>\n" if turn == 0 else ""
                conversations += [
                    Turn("human", prefix + sentence(rng, 8, 30) + "?"),
                    Turn("gpt", sentence(rng, 20, 120 // turns)),
                ]
            sample = ShardSample("synthetic", str(index), ["jpg"], [[640, 480]], conversations, {})
            written.append((f"b{index:08d}", sample, [photo(rng)]))
        path = out / "shards" / f"bench-{first // per_shard:06d}.tar"
        index = write_samples(path, written)
        reports.append(
            {
                "path": str(path.relative_to(out)),
                "samples": count,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "per_source": {"synthetic": count},
                "index": str(index.relative_to(out)),
                "index_sha256": sha256_file(index),
            }
        )
    manifest = Manifest(
        tool_version="bench",
        name="gpu-bench",
        seed=0,
        recipe={},
        recipe_sha256=hashlib.sha256(b"").hexdigest(),
        sources=[
            {
                "name": "synthetic",
                "source": "synthetic",
                "adapter_version": "1",
                "licence": "none",
                "path": "",
                "take": "all",
                "repeat": 1,
                "read": samples,
                "kept": samples,
                "rejected": {},
                "reencoded_images": 0,
                "in_mixture": samples,
                "share": 1.0,
                "artifacts": [],
            }
        ],
        shards=reports,
        totals={
            "read": samples,
            "kept": samples,
            "rejected": 0,
            "samples": samples,
            "shards": len(reports),
            "bytes": sum(r["bytes"] for r in reports),
        },
        stats={"turns": {}, "text_chars": {}, "images_per_sample": {}, "image_width": {}, "image_height": {}},
        licences={"synthetic": "none"},
        strictest_terms="none",
        rejects_sha256=hashlib.sha256(b"").hexdigest(),
    )
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--per-shard", type=int, default=256)
    args = parser.parse_args()
    rng = random.Random(0)
    write_chat_tokenizer(
        args.out / "tokenizer", (sentence(rng, 5, 30) for _ in range(3000)), SPECIAL_TOKENS, IM_END
    )
    print(shards(args.out / "mixture", args.samples, args.per_shard, rng))


if __name__ == "__main__":
    main()
