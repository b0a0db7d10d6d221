"""Text views of a manifest."""

from __future__ import annotations

from dataprep.contract.manifest import (
    Decontamination,
    DuplicateReport,
    OverlapExample,
    OverlapReport,
    TokenStats,
)
from dataprep.report import decontamination_table, token_table


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
