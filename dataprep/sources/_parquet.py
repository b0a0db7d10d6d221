"""Reading parquet annotation files (SynthDoG-EN, ChartQA's parquet release): buffered batches,
image cells, and errors that name the file. pyarrow (~70 ms) is imported at the first file read:
naming the adapters (every recipe's check, every worker's first job) does not import it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq


def image_cell_bytes(cell: object) -> bytes | None:
    """The encoded bytes of a parquet image cell: a `{bytes, path}` struct or plain binary."""
    if isinstance(cell, dict):
        cell = cell.get("bytes")
    return cell if isinstance(cell, bytes) else None


PARQUET_BUFFER = 1 << 20
"""Read size of a buffered parquet stream. pyarrow decodes a whole row group whatever the batch
size; unbuffered (or pre-buffered, its default) it also holds the row group's raw column chunks."""


def open_parquet(path: Path, **options: Any) -> pq.ParquetFile:
    """`pq.ParquetFile(path, **options)`; a file that is not parquet (cut short, another format)
    is a ValueError naming it (running out of memory stays a MemoryError)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path, **options)
    except MemoryError:  # pyarrow's ArrowMemoryError too: the file may well be fine
        raise
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path}: not a readable parquet file ({error})") from None


def parquet_batches(path: Path, columns: list[str], **options: Any) -> Iterator[pa.RecordBatch]:
    """`ParquetFile(path).iter_batches(columns=…)` through a buffered stream, first checking the
    file has those columns (a file of another layout is named, not a KeyError deep in pyarrow);
    a file that cannot be decoded (corrupt pages) is a ValueError naming it."""
    import pyarrow as pa

    parquet = open_parquet(path, buffer_size=PARQUET_BUFFER, pre_buffer=False)
    absent = [column for column in columns if column not in parquet.schema_arrow.names]
    if absent:
        raise ValueError(
            f"{path}: no column {', '.join(absent)} (has {', '.join(parquet.schema_arrow.names)})"
        )
    try:
        yield from parquet.iter_batches(columns=columns, **options)
    except MemoryError:
        raise
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path}: not a readable parquet file ({error})") from None
