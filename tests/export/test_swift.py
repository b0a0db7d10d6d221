"""`dataprep export swift`: `messages` + `images` jsonl, read back by ms-swift's format rules."""

from __future__ import annotations

import json
from collections import Counter

from dataprep.cli import main

from helpers.trainer_loaders import swift_read

ROLES = {"human": "user", "gpt": "assistant"}


def test_every_sample_reads_back_by_ms_swifts_messages_rules(mixture, tmp_path, capsys):
    manifest_path, _, originals = mixture
    expected = Counter(
        (tuple((ROLES[t["from"]], t["value"]) for t in o.conversations), tuple(o.images)) for o in originals
    )
    out = tmp_path / "swift"
    assert main(["export", "swift", str(manifest_path), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == len(originals)
    assert Counter((s.turns, s.images) for s in swift_read(out / "swift.jsonl", cwd=out)) == expected

    assert (
        main(
            ["export", "swift", str(manifest_path), "--out", str(tmp_path / "runs" / "s"), "--base", "runs/s"]
        )
        == 0
    )
    seen = swift_read(tmp_path / "runs" / "s" / "swift.jsonl", cwd=tmp_path)
    assert Counter((s.turns, s.images) for s in seen) == expected
