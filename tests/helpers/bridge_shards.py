"""Test helpers: a small BPE tokenizer trained here, and contract-conformant shards + manifest."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
from pathlib import Path

from PIL import Image

from dataprep.contract.manifest import Manifest
from dataprep.contract.sample import ShardSample, Turn
from dataprep.contract.shards import write_samples, write_shard_index, write_tar
from dataprep.files import sha256_file
from dataprep.fixtures.tokenizer import write_chat_tokenizer
from train_bridge.template import IM_END, SPECIAL_TOKENS

WORDS = [
    "what",
    "is",
    "the",
    "colour",
    "of",
    "the",
    "bar",
    "chart",
    "page",
    "figure",
    "photo",
    "show",
    "answer",
    "question",
    "value",
    "highest",
    "lowest",
    "how",
    "many",
    "people",
    "are",
    "in",
    "this",
    "image",
    "describe",
    "the",
    "scene",
    "please",
    "read",
    "text",
    "title",
    "label",
    "year",
    "total",
]


def corpus(lines: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + "?" for _ in range(lines)]


def train_tokenizer(folder: Path):
    """The tests' tokenizer: BPE over a small question corpus."""
    return write_chat_tokenizer(folder, corpus(), SPECIAL_TOKENS, IM_END, vocab_size=400)


def image_bytes(rng: random.Random, fmt: str) -> bytes:
    width, height = rng.randint(20, 60), rng.randint(20, 60)
    image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    image.paste(tuple(rng.randrange(256) for _ in range(3)), (2, 2, width // 2, height // 2))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def make_sample(index: int, rng: random.Random) -> tuple[ShardSample, list[bytes]]:
    """Cycles through single-image, multi-turn, text-only and multi-image samples."""
    kind = index % 4

    def q() -> str:
        return words(rng, 3, 8) + "?"

    def a() -> str:
        return words(rng, 1, 5)

    if kind == 0:
        turns, suffixes, source = [("<image>\n" + q(), a())], ["jpg"], "photos"
    elif kind == 1:
        turns, suffixes, source = [("<image>\n" + q(), a()), (q(), a()), (q(), a())], ["png"], "charts"
    elif kind == 2:
        turns, suffixes, source = [(q(), a())], [], "text"
    else:
        turns, suffixes, source = (
            [("<image>\n<image>\n" + q(), a()), (q(), a())],
            ["0.jpg", "1.png"],
            "photos",
        )
    blobs = [image_bytes(rng, "JPEG" if s.endswith("jpg") else "PNG") for s in suffixes]
    sizes = [list(Image.open(io.BytesIO(b)).size) for b in blobs]
    conversations = [turn for h, g in turns for turn in (Turn("human", h), Turn("gpt", g))]
    return ShardSample(source, f"{source}-{index}", suffixes, sizes, conversations, {}), blobs


def rewrite_shard(manifest_path: Path, shard: int, members: list[tuple[str, bytes]]) -> Path:
    """Replace a shard's members (as given: they may break the contract) and its sidecar index, and
    give the manifest its new size and sha256 (a mixture made or edited by someone else, not one
    damaged after the build); return the shard's path."""
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["shards"][shard]
    path = manifest_path.parent / entry["path"]
    index = write_shard_index(path, write_tar(path, members))
    entry["bytes"], entry["sha256"] = path.stat().st_size, sha256_file(path)
    entry["index_sha256"] = sha256_file(index)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return path


def build_shards(out: Path, samples: int = 22, per_shard: int = 5, seed: int = 3) -> Path:
    """Write shards + manifest.json under `out`; return the manifest path."""
    rng = random.Random(seed)
    shards, per_source_total = [], {}
    for first in range(0, samples, per_shard):
        written, per_source = [], {}
        for index in range(first, min(first + per_shard, samples)):
            sample, blobs = make_sample(index, rng)
            written.append((f"s{index:06d}", sample, blobs))
            per_source[sample.source] = per_source.get(sample.source, 0) + 1
        path = out / "shards" / f"mix-{first // per_shard:06d}.tar"
        index = write_samples(path, written)
        shards.append(
            {
                "path": str(path.relative_to(out)),
                "samples": sum(per_source.values()),
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "per_source": per_source,
                "index": str(index.relative_to(out)),
                "index_sha256": sha256_file(index),
            }
        )
        for name, count in per_source.items():
            per_source_total[name] = per_source_total.get(name, 0) + count
    total_bytes = sum(s["bytes"] for s in shards)
    manifest = Manifest(
        tool_version="0.1.0",
        name="bridge-test",
        seed=seed,
        recipe={"name": "bridge-test"},
        recipe_sha256=hashlib.sha256(b"bridge-test").hexdigest(),
        sources=[
            {
                "name": name,
                "source": "conversations",
                "adapter_version": "1",
                "licence": "CC-BY-4.0",
                "path": f"raw/{name}",
                "take": "all",
                "repeat": 1,
                "read": count,
                "kept": count,
                "rejected": {},
                "reencoded_images": 0,
                "in_mixture": count,
                "share": count / samples,
                "artifacts": [],
            }
            for name, count in sorted(per_source_total.items())
        ],
        shards=shards,
        totals={
            "read": samples,
            "kept": samples,
            "rejected": 0,
            "samples": samples,
            "shards": len(shards),
            "bytes": total_bytes,
        },
        stats={"turns": {}, "text_chars": {}, "images_per_sample": {}, "image_width": {}, "image_height": {}},
        licences={name: "CC-BY-4.0" for name in per_source_total},
        strictest_terms="CC-BY-4.0",
        rejects_sha256=hashlib.sha256(b"").hexdigest(),
    )
    manifest.content_sha256 = manifest.compute_content_sha256()
    (out / "rejects.jsonl").write_bytes(b"")
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
    return path


def manifest_leading_out(tmp_path: Path, where: str) -> Path:
    """Shards under `tmp_path/mix` whose manifest names its first shard outside its folder (`where`:
    a relative path with `..`, or "absolute"); return the manifest's path."""
    manifest_path = build_shards(tmp_path / "mix", samples=4, per_shard=4)
    outside = tmp_path / "outside" / "mix-000000.tar"
    outside.parent.mkdir()
    shutil.copy(tmp_path / "mix" / "shards" / "mix-000000.tar", outside)
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"][0]["path"] = str(outside) if where == "absolute" else where
    manifest_path.write_text(json.dumps(manifest))
    return manifest_path
