"""The adapter registry: one adapter per recipe name."""

from __future__ import annotations

from dataprep.sources import registry
from dataprep.sources.conversations import Conversations

from helpers.fresh_imports import imported_by


class Instrumented(Conversations):
    """A subclass such as a test's wrapper: it inherits the name but is no adapter of its own."""


def test_a_subclass_inheriting_a_name_does_not_replace_the_adapter() -> None:
    registry.cache_clear()
    try:
        adapters = registry()
    finally:
        registry.cache_clear()
    assert adapters["conversations"] is Conversations
    assert Instrumented not in adapters.values()
    assert len(adapters) == 10


def test_naming_the_adapters_imports_no_pyarrow() -> None:
    """Every recipe's check and every worker's first job list the adapters: pyarrow (~70 ms) waits
    for the first parquet file read."""
    assert imported_by("from dataprep.sources import registry\nregistry()", ("pyarrow",)) == []
    assert imported_by("from dataprep.sources.chartqa import ChartQA", ("pyarrow",)) == []
