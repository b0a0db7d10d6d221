"""Text views of a manifest."""

from __future__ import annotations

from dataprep.contract.manifest import Manifest, SourceReport, TokenStats
from dataprep.report import mixture_warnings, token_table


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
