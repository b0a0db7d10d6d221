"""Shared helpers of the adapter tests that read every unit into one list (AI2D, GeoQA+, SynthDoG-EN)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from dataprep.sample import Record, Reject, Sample
from dataprep.sources.base import Source


def read_records(source_class: type[Source], root: Path, **options: Any) -> list[Record]:
    """Every record of every unit, in order, for `source_class` built with `options`."""
    source = source_class(root=root, options=source_class.Options(**options))
    return [record for unit in source.units() for record in source.read(unit)]


def by_id(records: list[Record]) -> dict[str, Record]:
    return {record.id: record for record in records}


def samples_of(records: list[Record]) -> list[Sample]:
    return [record for record in records if isinstance(record, Sample)]


def reject_counts(records: list[Record]) -> Counter[str]:
    return Counter(record.reason for record in records if isinstance(record, Reject))
