"""A small user dataset in the InternVL/LLaVA conversation layout, with planted bad records."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

from PIL import Image

from dataprep.fixtures.draw import encode, photo


def write_conversations(root: Path, good: int = 12, seed: int = 0) -> dict[str, Any]:
    """Write `root/train.jsonl` + `root/images/`; return expected samples by id and planted rejects."""
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    expected: dict[str, dict[str, Any]] = {}
    for index in range(good):
        name = f"img_{index:03d}.{'png' if index % 3 == 0 else 'jpg'}"
        data = encode(photo(rng), "PNG" if name.endswith("png") else "JPEG", quality=90)
        (images / name).write_bytes(data)
        turns = [
            {"from": "human", "value": f"<image>\nWhat is in picture {index}?"},
            {"from": "gpt", "value": f"Shapes number {index}."},
        ]
        if index % 4 == 1:
            turns += [{"from": "human", "value": "And the colours?"}, {"from": "gpt", "value": "Many, 多彩."}]
        records.append({"id": f"good-{index}", "image": name, "conversations": turns})
        expected[f"good-{index}"] = {"conversations": turns, "images": [data]}
    text_only = [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "hi"}]
    records.append({"id": "text-only", "conversations": text_only})
    expected["text-only"] = {"conversations": text_only, "images": []}

    (root.parent / "secret.jpg").write_bytes(encode(photo(rng), "JPEG"))
    (images / "truncated.jpg").write_bytes(encode(photo(rng, 200, 150), "JPEG")[:900])
    (images / "garbage.jpg").write_bytes(b"this is not an image at all")
    bomb = io.BytesIO()
    Image.new("L", (3000, 3000)).save(bomb, format="PNG")
    (images / "bomb.png").write_bytes(bomb.getvalue())
    planted = {
        "missing": ("nowhere.jpg", "image_missing"),
        "truncated": ("truncated.jpg", "image_truncated"),
        "garbage": ("garbage.jpg", "image_unreadable"),
        "bomb": ("bomb.png", "image_too_large"),
        "escape": ("../../secret.jpg", "unsafe_path"),
    }
    for record_id, (name, _) in planted.items():
        turns = [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "No."}]
        records.append({"id": record_id, "image": name, "conversations": turns})
    records.append(
        {"id": "gpt-first", "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]}
    )
    rejects = {record_id: reason for record_id, (_, reason) in planted.items()}
    rejects["gpt-first"] = "bad_conversation"
    rng.shuffle(records)
    with open(root / "train.jsonl", "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {"expected": expected, "rejects": rejects}


def recipe_yaml(
    name: str, data_root: Path, out: Path, shard_size: int = 4, extra_sources: str = "", extra: str = ""
) -> str:
    return f"""
name: {name}
seed: 7
data_root: {data_root}
output: {{dir: {out}, shard_size: {shard_size}}}
image: {{max_pixels: 4000000}}
{extra}
sources:
  - source: conversations
    name: mine
    path: mine
    file: train.jsonl
    image_root: images
{extra_sources}"""
