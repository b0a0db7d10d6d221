"""ms-swift's layout: `swift.jsonl` of `{messages, images}` (`--dataset DIR/swift.jsonl`).

`messages` are `{role: user|assistant, content}`; each `<image>` stays where it is and takes the
next path of `images` (as many as placeholders, in order). ms-swift opens relative image paths from
its working directory: they start with `base` (how the trainer reaches the export folder; default
none, for a trainer started in it)."""

from __future__ import annotations

from typing import Any

from dataprep.export.run import OneFileLayout
from dataprep.export.samples import ExportSample

ROLES = {"human": "user", "gpt": "assistant"}


class SwiftLayout(OneFileLayout):
    name = "swift"
    file = "swift.jsonl"

    def __init__(self, base: str = "") -> None:
        super().__init__()
        self._base = base.rstrip("/") + "/" if base else ""

    def record(self, exported: ExportSample, images: list[str]) -> dict[str, Any]:
        messages = [
            {"role": ROLES[turn.role], "content": turn.value} for turn in exported.sample.conversations
        ]
        return {"messages": messages, "images": [self._base + path for path in images]}
