"""Hub-ready Parquet: the build's samples with its dataset card, for `load_dataset` and the Hub's viewer.

One file per shard (`data/<shard name>.parquet`) in row groups of `ROW_GROUP_ROWS` samples (`datasets`'
batch for images; the Hub's viewer reads a row group at a time). Columns: `key`, `source`, `id`,
`images` (a list of images, each with its bytes: a repeated sample's copies too), `image_sizes`,
`conversations` (`[{from, value}]`) and `meta` (JSON); the schema carries these `datasets` features,
so `load_dataset("parquet", ...)` needs nothing else, and the card (`README.md`) names
`data/*.parquet` for `load_dataset(<folder>)`. No sample is left out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataprep.card import CARD, IMAGE, JSON, SIZES, STRING, TURNS, dataset_card
from dataprep.contract.manifest import Manifest
from dataprep.export.folder import ExportFolder
from dataprep.export.samples import ExportSample
from dataprep.files import canonical_json

ROW_GROUP_ROWS = 100
DATA = "data"
DATA_FILES = f"{DATA}/*.parquet"
FEATURES = {
    "key": STRING,
    "source": STRING,
    "id": STRING,
    "images": {"_type": "List", "feature": IMAGE},
    "image_sizes": SIZES,
    "conversations": TURNS,
    "meta": JSON,
}
"""The columns as `datasets` features (`Features.to_dict()` form)."""

READS = """\
```python
import datasets
out = "."  # this folder
ds = datasets.load_dataset(out, split="train")
ds = datasets.load_dataset("parquet", data_files=f"{out}/data/*.parquet", split="train")
```
"""


def arrow_schema() -> pa.Schema:
    """The files' schema, with the `datasets` features in its metadata."""
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    fields = [
        ("key", pa.string()),
        ("source", pa.string()),
        ("id", pa.string()),
        ("images", pa.list_(image)),
        ("image_sizes", pa.list_(pa.list_(pa.int64()))),
        ("conversations", pa.list_(turn)),
        ("meta", pa.json_()),
    ]
    metadata = {"huggingface": json.dumps({"info": {"features": FEATURES}}, sort_keys=True)}
    return pa.schema(fields, metadata=metadata)


def parquet_row(exported: ExportSample) -> dict[str, Any]:
    """One sample as a row of `arrow_schema()`."""
    sample = exported.sample
    return {
        "key": exported.key,
        "source": sample.source,
        "id": sample.id,
        "images": [{"bytes": exported.images[s], "path": f"{exported.key}.{s}"} for s in sample.images],
        "image_sizes": sample.image_sizes,
        "conversations": [turn.to_json() for turn in sample.conversations],
        "meta": canonical_json(sample.meta).decode("utf-8"),
    }


class ParquetLayout:
    name = "parquet"
    owns = (DATA, CARD)

    def __init__(self, manifest: Manifest) -> None:
        self._manifest = manifest
        self._schema = arrow_schema()
        self._folder: ExportFolder | None = None
        self._file: str | None = None
        self._writer: pq.ParquetWriter | None = None
        self._rows: list[dict[str, Any]] = []
        self._files = 0

    def start(self, folder: ExportFolder) -> None:
        self._folder = folder

    def left_out(self, exported: ExportSample) -> str | None:
        return None

    def add(self, exported: ExportSample) -> None:
        file = f"{DATA}/{Path(exported.shard).stem}.parquet"
        if file != self._file:
            self._close_file()
            assert self._folder is not None
            self._file = file
            self._writer = pq.ParquetWriter(self._folder.partial(file), self._schema)
            self._files += 1
        self._rows.append(parquet_row(exported))
        if len(self._rows) == ROW_GROUP_ROWS:
            self._write_rows()

    def finish(self) -> dict[str, Any]:
        self._close_file()
        assert self._folder is not None
        self._folder.write(CARD, dataset_card(self._manifest, DATA_FILES, FEATURES, READS))
        return {
            "files": self._files,
            "data_files": DATA_FILES,
            "row_group_rows": ROW_GROUP_ROWS,
            "card": CARD,
        }

    def _write_rows(self) -> None:
        assert self._writer is not None
        table = pa.Table.from_pylist(self._rows, schema=self._schema)
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self._rows = []

    def _close_file(self) -> None:
        """Write the last row group of the open file and put it in place."""
        if self._writer is None or self._file is None or self._folder is None:
            return
        if self._rows:
            self._write_rows()
        self._writer.close()
        self._folder.close(self._file)
        self._writer = self._file = None
