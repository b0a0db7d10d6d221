"""LLaVA's layout (`llava/train/train.py`): one JSON array `llava.json` of `{id, image?,
conversations}` and one image folder, `images/` (its `--image_folder`), `image` relative to it.

LLaVA's `LazySupervisedDataset` opens one image per record (`Image.open(join(folder, image))`):
multi-image samples are left out and counted. A text-only record has no `image` (LLaVA feeds it a
blank image). Turns are kept as they are: LLaVA itself moves a turn's `<image>` to its start."""

from __future__ import annotations

from typing import Any

from dataprep.export.run import OneFileLayout
from dataprep.export.samples import ExportSample


class LlavaLayout(OneFileLayout):
    name = "llava"
    file = "llava.json"
    array = True

    def left_out(self, exported: ExportSample) -> str | None:
        return "multi_image" if len(exported.sample.images) > 1 else None

    def record(self, exported: ExportSample, images: list[str]) -> dict[str, Any]:
        record: dict[str, Any] = {"id": exported.sample.id}
        if images:
            record["image"] = images[0].removeprefix("images/")
        record["conversations"] = [turn.to_json() for turn in exported.sample.conversations]
        return record

    def finish(self) -> dict[str, Any]:
        return {**super().finish(), "image_folder": "images"}
