"""InternVL's fine-tuning layout: `meta.json`, `annotations/<source>.jsonl`, `images/<source>/`.

Each line carries `length` (the sample's token length: what the trainer's `group_by_length` reads
instead of tokenizing every line at start-up). A source the recipe repeats is written once with
`repeat_time` (the trainer repeats the list). Paths are relative to the export folder, or start with
`base` (how the trainer, run from its own folder, reaches this one).

The trainer prepends `<image>\\n` to the first turn of a single-image line that lacks it; a line
whose one placeholder sits in a later turn has it moved there, so the image is not expanded twice.
`trainer="v1_2"` leaves multi-image samples out (the V1-2 release reads one image per line)."""

from __future__ import annotations

import json
from collections import Counter
from typing import IO, Any

from dataprep.contract.manifest import Manifest
from dataprep.contract.sample import IMAGE_PLACEHOLDER, placeholder_first
from dataprep.export.folder import ExportFolder
from dataprep.export.samples import ExportSample, UnreadableBuild, write_images
from dataprep.export.trainers import Trainer


def internvl_line(exported: ExportSample, images: list[str]) -> dict[str, Any]:
    """One annotation line: `image` a name under the source's root (one image), a list (several) or
    absent (text); `length` when known."""
    sample = exported.sample
    line: dict[str, Any] = {"id": sample.id}
    names = [path.rsplit("/", 1)[1] for path in images]
    conversations = [turn.to_json() for turn in sample.conversations]
    if len(names) == 1:
        line["image"] = names[0]
        line["width"], line["height"] = sample.image_sizes[0]
        if IMAGE_PLACEHOLDER not in conversations[0]["value"]:
            texts = placeholder_first([turn["value"] for turn in conversations])
            conversations = [{**turn, "value": text} for turn, text in zip(conversations, texts, strict=True)]
    elif names:
        line["image"] = names
    line["conversations"] = conversations
    if exported.length is not None:
        line["length"] = exported.length
    return line


class InternVLLayout:
    name = "internvl"
    owns = ("meta.json", "annotations", "images")

    def __init__(self, repeats: dict[str, int], trainer: Trainer = "current", base: str = "") -> None:
        self._repeats = repeats
        self._trainer = trainer
        self._base = base.rstrip("/") + "/" if base else ""
        self._lines: Counter[str] = Counter()
        self._samples: Counter[str] = Counter()
        self._files: dict[str, IO[str]] = {}
        self._folder: ExportFolder | None = None

    @classmethod
    def for_build(cls, manifest: Manifest, trainer: Trainer = "current", base: str = "") -> InternVLLayout:
        """The layout of a build whose sources repeat as its recipe said."""
        return cls({source.name: source.repeat for source in manifest.sources}, trainer, base)

    def start(self, folder: ExportFolder) -> None:
        self._folder = folder

    def left_out(self, exported: ExportSample) -> str | None:
        if self._trainer == "v1_2" and len(exported.sample.images) > 1:
            return "multi_image"
        return None

    def add(self, exported: ExportSample) -> None:
        assert self._folder is not None
        images = write_images(self._folder, exported)
        source = exported.sample.source
        self._samples[source] += 1
        if exported.copy % self._repeats.get(source, 1):
            return  # a repeat: the trainer makes it from `repeat_time`
        if source not in self._files:
            self._files[source] = self._folder.open(f"annotations/{source}.jsonl")
        self._files[source].write(json.dumps(internvl_line(exported, images), ensure_ascii=False) + "\n")
        self._lines[source] += 1

    def finish(self) -> dict[str, Any]:
        for source, lines in self._lines.items():
            repeat = self._repeats.get(source, 1)
            if self._samples[source] != lines * repeat:
                raise UnreadableBuild(
                    f"source {source}: {self._samples[source]} samples are not {repeat} copies of "
                    f"{lines} distinct ones, as its `repeat: {repeat}` makes them"
                )
        meta = {
            source: {
                "root": f"{self._base}images/{source}/",
                "annotation": f"{self._base}annotations/{source}.jsonl",
                "data_augment": False,
                "repeat_time": self._repeats.get(source, 1),
                "length": self._lines[source],
            }
            for source in sorted(self._lines)
        }
        if self._folder is not None:
            self._folder.write_json("meta.json", meta)
        return {"trainer": self._trainer, "lines": sum(self._lines.values()), "meta": meta}
