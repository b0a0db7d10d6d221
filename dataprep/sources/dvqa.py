"""DVQA: bar-chart questions, all questions of one chart as one multi-turn conversation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from dataprep.sample import ImageFile, Reject
from dataprep.sources._json_stream import estimated_count
from dataprep.sources._vqa_groups import (
    GroupedVQAOptions,
    GroupedVQASource,
    Keyed,
    Question,
    Wanted,
    build_question,
    numbered_questions,
    stream_json,
)


class DVQAOptions(GroupedVQAOptions):
    """`split` picks `{split}_qa.json` unless `qa_file` (relative to the root) names another file;
    images are looked up under `images/`."""

    split: Literal["train", "val_easy", "val_hard"] = "train"
    qa_file: str | None = None
    images: str = "images"


class DVQA(GroupedVQASource):
    """Reads `{split}_qa.json` (one JSON list of questions) and `images/bar_{split}_NNNNNNNN.png`."""

    name = "dvqa"
    licence = "CC BY-NC 4.0"
    citation = "Kafle, Price, Cohen, Kanan. DVQA: Understanding Data Visualizations via Question Answering. CVPR 2018."
    version = "3"
    Options = DVQAOptions
    options: DVQAOptions

    @property
    def qa_relpath(self) -> str:
        return self.options.qa_file or f"{self.options.split}_qa.json"

    def inputs(self) -> list[Path]:
        return [self.file(self.qa_relpath)]

    def estimated_questions(self) -> int:
        return estimated_count(self.file(self.qa_relpath), b'"question_id"')

    def questions(self, wanted: Wanted) -> Iterator[Keyed]:
        records = stream_json(self.file(self.qa_relpath), "item")
        return numbered_questions(records, "question_id", "image", self.question, wanted)

    @staticmethod
    def question(question_id: int, record: dict[str, Any]) -> Question | Reject:
        """One question record, its template, id and answer box kept for the meta."""
        fields = {
            "question_ids": question_id,
            "template_ids": record.get("template_id"),
            "answer_bboxes": record.get("answer_bbox"),
        }
        return build_question(
            str(question_id), record.get("question"), record.get("answer"), (question_id,), fields
        )

    def image(self, key: str) -> ImageFile:
        return ImageFile(self.root, f"{self.options.images}/{key}")

    def sample_meta(self, key: str, questions: list[Question]) -> dict[str, Any]:
        return {"split": self.options.split, "file": self.qa_relpath}
