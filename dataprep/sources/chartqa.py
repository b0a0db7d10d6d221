"""ChartQA: human and augmented questions of one chart as one multi-turn conversation."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from dataprep.sample import ImageBytes, ImageFile, ImageInput, Reject
from dataprep.sources._json_stream import estimated_count
from dataprep.sources._parquet import image_cell_bytes, open_parquet, parquet_batches
from dataprep.sources._vqa_groups import (
    GroupedVQAOptions,
    GroupedVQASource,
    Keyed,
    Question,
    Wanted,
    build_question,
    stream_json,
)

DATASET_FOLDER = "ChartQA Dataset"
KINDS = ("human", "augmented")
QUESTION_COLUMNS = ["imgname", "query", "label", "type"]
BATCH_ROWS = 1024


class ChartQAOptions(GroupedVQAOptions):
    """`split` picks the `{split}/` folder of `ChartQA Dataset` (format `json`, the published zip)
    or the `{split}-*.parquet` files of the later export (format `parquet`)."""

    split: Literal["train", "val", "test"] = "train"
    format: Literal["json", "parquet"] = "json"


class ChartQA(GroupedVQASource):
    """Reads `ChartQA Dataset/{split}/{split}_{human,augmented}.json` and `{split}/png/<imgname>`
    (the root may be the folder holding `ChartQA Dataset` or that folder itself), or with format
    `parquet` the export's `data/{split}-NNNNN-of-NNNNN.parquet` (or those files at the root)."""

    name = "chartqa"
    licence = "GPL-3.0"
    citation = "Masry, Long, Tan, Joty, Hoque. ChartQA: A Benchmark for Question Answering about Charts with Visual and Logical Reasoning. Findings of ACL 2022."
    version = "3"
    Options = ChartQAOptions
    options: ChartQAOptions

    @cached_property
    def split_folder(self) -> str:
        """The split folder of the JSON layout, relative to the root."""
        split = self.options.split
        return f"{DATASET_FOLDER}/{split}" if (self.root / DATASET_FOLDER).is_dir() else split

    @cached_property
    def annotation_relpaths(self) -> list[str]:
        """The question files, relative to the root, in reading order."""
        split = self.options.split
        if self.options.format == "json":
            return [f"{self.split_folder}/{split}_{kind}.json" for kind in KINDS]
        found = sorted(self.root.glob(f"data/{split}-*.parquet")) or sorted(
            self.root.glob(f"{split}-*.parquet")
        )
        return [path.relative_to(self.root).as_posix() for path in found]

    def inputs(self) -> list[Path]:
        return [self.file(relpath) for relpath in self.annotation_relpaths]

    def missing(self) -> list[str]:
        if self.options.format == "parquet" and not self.annotation_relpaths:
            return [f"{self.root}/data/{self.options.split}-*.parquet"]
        return super().missing()

    def estimated_questions(self) -> int:
        paths = [self.file(relpath) for relpath in self.annotation_relpaths]
        if self.options.format == "json":
            return sum(estimated_count(path, b'"imgname"') for path in paths)
        return sum(open_parquet(path).metadata.num_rows for path in paths)

    def records(self) -> Iterator[tuple[int, str, int, object, object]]:
        """(file index, file, position in it, question kind, record) of every question record."""
        for file_index, relpath in enumerate(self.annotation_relpaths):
            path = self.file(relpath)
            if self.options.format == "json":
                kind = KINDS[file_index]
                records = ((kind, record) for record in stream_json(path, "item"))
            else:
                batches = parquet_batches(path, QUESTION_COLUMNS, batch_size=BATCH_ROWS)
                records = ((row["type"], row) for batch in batches for row in batch.to_pylist())
            for position, (kind, record) in enumerate(records):
                yield file_index, relpath, position, kind, record

    def questions(self, wanted: Wanted) -> Iterator[Keyed]:
        for file_index, relpath, position, kind, record in self.records():
            chart = record.get("imgname") if isinstance(record, dict) else None
            if not wanted(chart if isinstance(chart, str) and chart else None):
                continue
            record_id = f"{relpath}#{position}"
            if not isinstance(record, dict):
                yield Keyed(None, Reject(record_id, "bad_record", f"not an object: {record!r}"))
                continue
            if not isinstance(chart, str) or not chart:
                yield Keyed(None, Reject(record_id, "bad_record", f"imgname is {chart!r}"))
                continue
            if not isinstance(kind, str):
                yield Keyed(chart, Reject(record_id, "bad_record", f"type is {kind!r}"))
                continue
            order = (0 if kind.startswith("human") else 1, file_index, position)
            yield Keyed(
                chart,
                build_question(
                    record_id,
                    record.get("query"),
                    record.get("label"),
                    order,
                    {"kinds": kind},
                    source=relpath,
                ),
            )

    def image(self, key: str) -> ImageFile:
        return ImageFile(self.root, f"{self.split_folder}/png/{key}")

    def images(self, keys: list[str]) -> dict[str, ImageInput]:
        if self.options.format == "json":
            return super().images(keys)
        return self.parquet_images(keys)

    def parquet_images(self, keys: list[str]) -> dict[str, ImageInput]:
        """The first image cell of each chart, reading only the rows of the wanted charts."""
        import pyarrow as pa  # only when charts are read, not when the recipe names adapters
        import pyarrow.compute as pc

        found: dict[str, ImageInput] = {}
        wanted = pa.array(keys, type=pa.string())
        for relpath in self.annotation_relpaths:
            batches = parquet_batches(self.file(relpath), ["imgname", "image"], batch_size=BATCH_ROWS)
            for batch in batches:
                rows = batch.filter(pc.is_in(batch.column("imgname"), value_set=wanted)).to_pylist()
                for row in rows:
                    data = image_cell_bytes(row["image"])
                    if data and row["imgname"] not in found:
                        found[row["imgname"]] = ImageBytes(data, name=row["imgname"])
        return found

    def sample_meta(self, key: str, questions: list[Question]) -> dict[str, Any]:
        files = list(dict.fromkeys(question.source for question in questions))
        return {"split": self.options.split, "file": files}
