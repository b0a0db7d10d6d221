"""How each trainer's own loader reads an export: their parsing rules restated here (not their code
imported), each returning the samples as that trainer sees them, or raising where it would fail.

- InternVL `internvl_chat_finetune.py` (`LazySupervisedDataset`, `build_datasets`).
- LLaVA `llava/train/train.py` (`LazySupervisedDataset`, `preprocess_multimodal`, `preprocess`).
- LLaMA-Factory `data/loader.py`, `data/converter.py` (`SharegptDatasetConverter`), `data/mm_plugin.py`.
- ms-swift standard `messages` format (`MessagesPreprocessor`, the template's media tags)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

IMAGE = "<image>"


@dataclass(frozen=True)
class Seen:
    """A sample as a trainer sees it: turns as (role, text), image bytes in order, its `length`."""

    turns: tuple[tuple[str, str], ...]
    images: tuple[bytes, ...]
    length: int | None = None


class LoaderError(Exception):
    """Where the trainer's loader would fail (an assert, a TypeError, a ValueError)."""


def _alternating(roles: list[str], first: str, second: str) -> None:
    """LLaVA's and InternVL's `preprocess`: a leading turn not from `first` is dropped, then each turn
    must be first/second alternately."""
    if roles and roles[0] != first:
        roles = roles[1:]
    for index, role in enumerate(roles):
        if role != (first, second)[index % 2]:
            raise LoaderError(f"turn {index} is from {role}")


def internvl_read(meta_file: Path, cwd: Path, trainer: str = "current") -> dict[str, list[Seen]]:
    """InternVL: per meta entry, the annotation's lines (it must end in `.jsonl`), `repeat_time` < 1
    keeps the first fraction, > 1 (an integer) repeats the list. A line whose `image` is a list is
    multi-image (the V1-2 release joins it to `root` as one path and fails); a name is one image,
    `<image>\\n` prepended to the first turn when it holds none, and then exactly one `<image>` is
    expanded; else pure text. Paths are opened from the working directory `cwd`. `length` is what
    `group_by_length` reads."""
    meta = json.loads(meta_file.read_text())
    read: dict[str, list[Seen]] = {}
    for name, entry in meta.items():
        if not entry["annotation"].endswith(".jsonl"):
            raise LoaderError(f"{name}: annotation must be jsonl")
        lines = (cwd / entry["annotation"]).read_text(encoding="utf-8").splitlines(keepends=True)
        repeat_time = entry.get("repeat_time", 1)
        if repeat_time < 1:
            lines = lines[: int(len(lines) * repeat_time)]
        if repeat_time > 1:
            if not isinstance(repeat_time, int):
                raise LoaderError(f"{name}: repeat_time {repeat_time} is not an integer")
            lines = lines * repeat_time
        root = cwd / entry["root"]
        read[name] = [_internvl_item(json.loads(line), root, trainer) for line in lines]
    return read


def _internvl_item(item: dict, root: Path, trainer: str) -> Seen:
    turns = [(turn["from"], turn["value"]) for turn in item["conversations"]]
    image = item.get("image")
    if image is not None and len(image) != 0:
        if isinstance(image, list):
            if trainer == "v1_2":
                raise LoaderError("the V1-2 trainer joins one image path: a list fails")
            names = image
        else:
            names = [image]
            if IMAGE not in turns[0][1]:
                turns[0] = (turns[0][0], IMAGE + "\n" + turns[0][1])
        images = tuple(Path(os.path.join(root, name)).read_bytes() for name in names)
    else:
        images = ()
    placeholders = sum(text.count(IMAGE) for _, text in turns)
    if placeholders != len(images):
        raise LoaderError(f"{placeholders} {IMAGE} for {len(images)} images")
    _alternating([role for role, _ in turns], "human", "gpt")
    return Seen(tuple(turns), images, item.get("length"))


def llava_read(data_path: Path, image_folder: Path) -> list[Seen]:
    """LLaVA: `json.load` of one array; a record with `image` opens `join(image_folder, image)` (one
    path: a list fails); `preprocess_multimodal` moves a turn's `<image>` to its start
    (`'<image>\\n' + value.replace('<image>', '').strip()`); `tokenizer_image_token` makes one image
    token per `<image>`, and there is one image tensor per record."""
    records = json.load(open(data_path, encoding="utf-8"))  # noqa: SIM115 - as LLaVA reads it
    seen = []
    for record in records:
        turns = [(turn["from"], turn["value"]) for turn in record["conversations"]]
        images: tuple[bytes, ...] = ()
        if "image" in record:
            if not isinstance(record["image"], str):
                raise LoaderError("LLaVA opens one image path per record")
            images = (Path(os.path.join(image_folder, record["image"])).read_bytes(),)
            turns = [
                (role, (IMAGE + "\n" + text.replace(IMAGE, "").strip()).strip())
                if IMAGE in text
                else (role, text)
                for role, text in turns
            ]
        if sum(text.count(IMAGE) for _, text in turns) != len(images):
            raise LoaderError("image tokens and images differ")
        _alternating([role for role, _ in turns], "human", "gpt")
        seen.append(Seen(tuple(turns), images))
    return seen


def llamafactory_read(dataset_dir: Path, dataset: str) -> list[Seen]:
    """LLaMA-Factory: the `dataset_info.json` entry names the file (`datasets` json builder), the
    `sharegpt` formatting, its columns and tags; the converter maps role tags (user/observation at
    even positions, assistant/function at odd ones, an even count, else the example is dropped as
    broken); a media path is joined to `media_dir` (default: the dataset folder) when that file
    exists; the multimodal plugin needs as many `<image>` in the messages as images."""
    import datasets

    info = json.loads((dataset_dir / "dataset_info.json").read_text())[dataset]
    if info.get("formatting") != "sharegpt":
        raise LoaderError("not the sharegpt formatting")
    columns = info["columns"]
    tags = {
        "role_tag": "from",
        "content_tag": "value",
        "user_tag": "human",
        "assistant_tag": "gpt",
        "observation_tag": "observation",
        "function_tag": "function_call",
        "system_tag": "system",
        **info.get("tags", {}),
    }
    rows = datasets.load_dataset("json", data_files=str(dataset_dir / info["file_name"]), split="train")
    seen = []
    for row in rows:
        messages = row[columns["messages"]]
        if messages and messages[0][tags["role_tag"]] == tags["system_tag"]:
            messages = messages[1:]
        accepted = (
            (tags["user_tag"], tags["observation_tag"]),
            (tags["assistant_tag"], tags["function_tag"]),
        )
        if (
            any(m[tags["role_tag"]] not in accepted[i % 2] for i, m in enumerate(messages))
            or len(messages) % 2
        ):
            raise LoaderError(f"broken example {messages}")
        turns = tuple((m[tags["role_tag"]], m[tags["content_tag"]]) for m in messages)
        paths = row[columns["images"]] if "images" in columns else []
        paths = [
            os.path.join(dataset_dir, path) if os.path.isfile(os.path.join(dataset_dir, path)) else path
            for path in paths or []
        ]
        if sum(text.count(IMAGE) for _, text in turns) != len(paths):
            raise LoaderError(f"The number of images does not match the number of {IMAGE} tokens")
        seen.append(Seen(turns, tuple(Path(path).read_bytes() for path in paths)))
    return seen


def swift_read(data_file: Path, cwd: Path) -> list[Seen]:
    """ms-swift: rows of `messages` (`{role, content}`, roles system/user/assistant/tool) and
    `images` (paths opened from the working directory `cwd`); each `<image>` takes the next image
    (missing tags would be prepended to the first message; more tags than images is a mismatch)."""
    import datasets

    rows = datasets.load_dataset("json", data_files=str(data_file), split="train")
    seen = []
    for row in rows:
        messages = row["messages"]
        if any(m["role"] not in ("system", "user", "assistant", "tool") for m in messages):
            raise LoaderError("unknown role")
        turns = [(m["role"], m["content"]) for m in messages]
        paths = row.get("images") or []
        missing = len(paths) - sum(text.count(IMAGE) for _, text in turns)
        if missing < 0:
            raise LoaderError("more <image> tags than images")
        turns[0] = (turns[0][0], IMAGE * missing + turns[0][1])
        _alternating([role for role, _ in turns], "user", "assistant")
        seen.append(Seen(tuple(turns), tuple((cwd / path).read_bytes() for path in paths)))
    return seen
