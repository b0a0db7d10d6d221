"""Text views of a manifest."""

from __future__ import annotations

from dataprep.contract.manifest import (
    Decontamination,
    DuplicateReport,
    Manifest,
    OverlapExample,
    OverlapReport,
    SourceReport,
    TokenStats,
)
from dataprep.report import decontamination_table, mixture_warnings, token_table


def test_a_source_without_samples_shows_no_token_lengths():
    tokens = TokenStats(
        tokenizer_sha256="ab" * 32,
        image_tokens=256,
        per_sample={"count": 2, "mean": 300.0, "min": 280, "max": 320, "total": 600},
        per_source={
            "kept": {"count": 2, "mean": 300.0, "min": 280, "max": 320, "total": 600},
            "none_taken": {"count": 0, "total": 0},
        },
    )
    rows = {line.split()[0]: line.split()[1:] for line in token_table(tokens).splitlines()[3:]}
    assert rows["kept"] == ["2", "300.0", "280", "320", "600"]
    assert rows["none_taken"] == ["0", "-", "-", "-", "0"]
    assert rows["total"] == ["2", "300.0", "280", "320", "600"]


def _source(name: str, read: int, kept: int, in_mixture: int, expected: int | None = None) -> SourceReport:
    rejected = {"image_missing": read - kept - 1, "bad_record": 1} if read > kept else {}
    return SourceReport.model_construct(
        name=name, read=read, kept=kept, rejected=rejected, in_mixture=in_mixture, expected=expected
    )


def test_warnings_name_empty_sources_missed_expectations_and_high_reject_rates():
    manifest = Manifest.model_construct(
        sources=[
            _source("fine", read=100, kept=81, in_mixture=81, expected=81),
            _source("empty", read=7, kept=0, in_mixture=0),
            _source("short", read=10, kept=10, in_mixture=9, expected=10),
            _source("lossy", read=100, kept=79, in_mixture=79),
        ]
    )
    assert mixture_warnings(manifest) == [
        "empty: kept 0 of 7 records read",
        "short: 9 samples in the mixture, 10 expected",
        "lossy: 21% of 100 records rejected (most: image_missing 20)",
    ]


def test_decontamination_table_lists_overlaps_then_duplicates() -> None:
    found = Decontamination(
        mode="drop",
        eval_items={"mmbench": 4329},
        overlaps=[
            OverlapReport(
                source="chartqa",
                eval_set="mmbench",
                samples=3,
                examples=[OverlapExample(sample="two_col_1.png", eval_item="12", kind="image", distance=2)],
            )
        ],
        dropped=3,
        duplicates=[
            DuplicateReport(
                kind="near_duplicate_image", sources=("chartqa", "dvqa"), pairs=7, examples=[("a", "b", 1.0)]
            )
        ],
    )
    lines = decontamination_table(found).splitlines()
    assert lines[0] == "decontamination (drop, 3 samples dropped (eval_overlap)); eval items: mmbench 4,329"
    assert lines[3].split() == ["chartqa", "3", "mmbench", "two_col_1.png", "~", "12", "(image", "2)"]
    assert lines[4].split() == ["chartqa", "&", "dvqa", "7", "near_duplicate_image", "a", "~", "b"]
    empty = found.model_copy(update={"overlaps": [], "duplicates": [], "mode": "report"})
    assert (
        decontamination_table(empty)
        == "decontamination (report); eval items: mmbench 4,329\nno overlaps, no duplicates"
    )
