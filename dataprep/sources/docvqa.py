"""DocVQA (single page): all questions of one page as one multi-turn conversation."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
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
    answer_text,
    build_question,
    numbered_questions,
    stream_json,
)


class DocVQAOptions(GroupedVQAOptions):
    """`split` picks the `{split}/` folder. `annotation` (relative to the root) overrides the
    annotation file, by default `{split}/{split}_v1.0_withQT.json` if present, else
    `{split}/{split}_v1.0.json`. Item `image` paths resolve under `images` (default `{split}`)."""

    split: Literal["train", "val", "test"] = "train"
    annotation: str | None = None
    images: str | None = None


class DocVQA(GroupedVQASource):
    """Reads `{split}/{split}_v1.0[_withQT].json` (`data` streamed item by item) and
    `{split}/documents/<ucsf_id>_<page>.png`."""

    name = "docvqa"
    licence = "registration; terms of the UCSF Industry Documents Library"
    citation = "Mathew, Karatzas, Jawahar. DocVQA: A Dataset for VQA on Document Images. WACV 2021."
    version = "3"
    Options = DocVQAOptions
    options: DocVQAOptions

    @cached_property
    def annotation_relpath(self) -> str:
        if self.options.annotation:
            return self.options.annotation
        split = self.options.split
        with_types = f"{split}/{split}_v1.0_withQT.json"
        return with_types if self.file(with_types).is_file() else f"{split}/{split}_v1.0.json"

    def inputs(self) -> list[Path]:
        return [self.file(self.annotation_relpath)]

    def estimated_questions(self) -> int:
        return estimated_count(self.file(self.annotation_relpath), b'"questionId"')

    def questions(self, wanted: Wanted) -> Iterator[Keyed]:
        items = stream_json(self.file(self.annotation_relpath), "data.item")
        return numbered_questions(items, "questionId", "image", self.question, wanted)

    @staticmethod
    def question(question_id: int, item: dict[str, Any]) -> Question | Reject:
        """One item as a question answered by its first answer, all answers kept in meta."""
        record_id = str(question_id)
        answers = item.get("answers")
        if answers is None or answers == []:
            return Reject(record_id, "no_answer", "item has no answers")
        if not isinstance(answers, list):
            return Reject(record_id, "bad_record", f"answers is {answers!r}")
        texts = [answer_text(answer) for answer in answers]
        if None in texts:
            return Reject(record_id, "bad_answer", f"answers {answers!r} are not all text")
        fields = {"question_ids": question_id, "answers": texts, "question_types": item.get("question_types")}
        shared = {
            "doc_id": item.get("docId"),
            "ucsf_document_id": item.get("ucsf_document_id"),
            "ucsf_document_page_no": item.get("ucsf_document_page_no"),
        }
        return build_question(record_id, item.get("question"), texts[0], (question_id,), fields, shared)

    def image(self, key: str) -> ImageFile:
        return ImageFile(self.root, f"{self.options.images or self.options.split}/{key}")

    def sample_meta(self, key: str, questions: list[Question]) -> dict[str, Any]:
        return {"split": self.options.split, "file": self.annotation_relpath}
