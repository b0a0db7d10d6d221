"""LLaMA-Factory's layout: `data.jsonl` in its sharegpt format (`conversations` of `{from, value}`
turns, `images` paths relative to the folder) and a `dataset_info.json` entry naming it, for
`--dataset_dir DIR --dataset <build name>`.

Its sharegpt converter maps the role tags (`human` → user, `gpt` → assistant) and needs user and
assistant turns alternating, an even count; its multimodal plugin needs as many `<image>` as
`images`. Every sample of the contract meets both: none is left out. Paths resolve against the
`media_dir`, by default the dataset folder."""

from __future__ import annotations

from typing import Any

from dataprep.export.folder import ExportFolder
from dataprep.export.run import OneFileLayout
from dataprep.export.samples import ExportSample

TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}


class LlamaFactoryLayout(OneFileLayout):
    name = "llamafactory"
    file = "data.jsonl"

    def __init__(self, dataset: str) -> None:
        super().__init__()
        self._dataset = dataset

    @property
    def owns(self) -> tuple[str, ...]:
        return (*super().owns, "dataset_info.json")

    def start(self, folder: ExportFolder) -> None:
        super().start(folder)
        folder.write_json("dataset_info.json", {self._dataset: self.dataset_info()})

    def dataset_info(self) -> dict[str, Any]:
        return {
            "file_name": self.file,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "images": "images"},
            "tags": TAGS,
        }

    def record(self, exported: ExportSample, images: list[str]) -> dict[str, Any]:
        return {"conversations": [turn.to_json() for turn in exported.sample.conversations], "images": images}

    def finish(self) -> dict[str, Any]:
        return {**super().finish(), "dataset": self._dataset}
