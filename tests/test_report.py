"""Text views of a manifest."""

from __future__ import annotations

from dataprep.contract.manifest import TokenStats
from dataprep.report import token_table


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
