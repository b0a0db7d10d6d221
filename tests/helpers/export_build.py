"""A real build for the export tests: every kind of sample (one JPEG, PNG or WebP image, an image
asked about in a later turn, several images, text only), one entry as it is and one repeated twice,
with token counts; and its samples read back independently with webdataset."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

from dataprep.engine.build import build
from dataprep.engine.runner import InProcessRunner
from dataprep.engine.settings import BuildSettings
from dataprep.fixtures.draw import encode, photo
from dataprep.fixtures.tokenizer import write_tokenizer
from dataprep.recipe.load import load_recipe

LATER = [
    {"from": "human", "value": "Hello there."},
    {"from": "gpt", "value": "Hi."},
    {"from": "human", "value": "<image>\nWhat is this?"},
    {"from": "gpt", "value": "A drawing."},
]
LATER_AS_INTERNVL = ["<image>\nHello there.", "Hi.", "What is this?", "A drawing."]


def _records(images: Path, rng: random.Random) -> list[dict]:
    def image(name: str, fmt: str) -> str:
        (images / name).write_bytes(encode(photo(rng), fmt))
        return name

    def ask(question: str, answer: str, *more: str) -> list[dict[str, str]]:
        texts = [question, answer, *more]
        return [{"from": ("human", "gpt")[i % 2], "value": text} for i, text in enumerate(texts)]

    return [
        {
            "id": "jpg",
            "image": image("a.jpg", "JPEG"),
            "conversations": ask("<image>\nWhat shapes?", "Circles."),
        },
        {
            "id": "png",
            "image": image("b.png", "PNG"),
            "conversations": ask("<image>\nColours?", "Red.", "And the sky?", "Blue, 多彩."),
        },
        {"id": "webp", "image": image("c.webp", "WEBP"), "conversations": ask("Look: <image> here", "Seen.")},
        {"id": "later", "image": image("d.jpg", "JPEG"), "conversations": LATER},
        {
            "id": "multi",
            "image": [image("e.jpg", "JPEG"), image("f.png", "PNG")],
            "conversations": ask("<image>\n<image>\nCompare them.", "The first is darker."),
        },
        {"id": "text", "conversations": ask("Say hi.", "hi")},
        {
            "id": "jpg2",
            "image": image("g.jpg", "JPEG"),
            "conversations": ask("<image>\nDescribe.", "Shapes."),
        },
    ]


@dataclass(frozen=True)
class Original:
    """A sample as the shards hold it, read with webdataset."""

    key: str
    source: str
    id: str
    conversations: list[dict[str, str]]
    images: list[bytes]


def build_export_mixture(root: Path) -> tuple[Path, Path]:
    """Build the mixture under `root`; return (manifest path, tokenizer.json)."""
    data = root / "data" / "mine"
    (data / "images").mkdir(parents=True)
    records = _records(data / "images", random.Random(5))
    (data / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    texts = [turn["value"] for record in records for turn in record["conversations"]]
    tokenizer = write_tokenizer(root / "tokenizer.json", texts, vocab_size=300)
    recipe = root / "mix.yaml"
    recipe.write_text(
        f"""
name: mix
seed: 11
data_root: {root / "data"}
output: {{dir: {root / "out"}, shard_size: 4}}
image: {{max_pixels: 4000000}}
tokens: {{tokenizer: {tokenizer}, image_tokens: 16}}
sources:
  - {{source: conversations, name: mine, path: mine, file: train.jsonl, image_root: images}}
  - {{source: conversations, name: twice, path: mine, file: train.jsonl, image_root: images, repeat: 2}}
"""
    )
    build(load_recipe(recipe), BuildSettings(out=root / "out", progress=False), InProcessRunner())
    return root / "out" / "manifest.json", tokenizer


def read_originals(manifest_path: Path) -> list[Original]:
    """Every sample of the build's shards, in order, read with webdataset."""
    manifest = json.loads(manifest_path.read_text())
    urls = [str(manifest_path.parent / shard["path"]) for shard in manifest["shards"]]
    originals = []
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        record = json.loads(sample["json"])
        images = [sample[suffix] for suffix in record["images"]]
        originals.append(
            Original(sample["__key__"], record["source"], record["id"], record["conversations"], images)
        )
    return originals
