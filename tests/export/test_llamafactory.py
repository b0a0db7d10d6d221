"""`dataprep export llamafactory`: sharegpt jsonl + `dataset_info.json`, read back by LLaMA-Factory's
loader rules (its converter's role tags, `<image>` count == images)."""

from __future__ import annotations

import json
from collections import Counter

from dataprep.cli import main

from helpers.trainer_loaders import llamafactory_read


def test_every_sample_reads_back_by_llamafactorys_sharegpt_rules(mixture, tmp_path, capsys):
    manifest_path, _, originals = mixture
    out = tmp_path / "lf"
    assert main(["export", "llamafactory", str(manifest_path), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == len(originals) and summary["left_out"] == {} and summary["dataset"] == "mix"
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["mix"]["formatting"] == "sharegpt" and info["mix"]["columns"] == {
        "messages": "conversations",
        "images": "images",
    }
    seen = llamafactory_read(out, "mix")
    expected = Counter(
        (tuple((t["from"], t["value"]) for t in o.conversations), tuple(o.images)) for o in originals
    )
    assert Counter((s.turns, s.images) for s in seen) == expected
    assert sum(len(s.images) > 1 for s in seen) == 3
