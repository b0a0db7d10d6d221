"""`dataprep export llava`: one JSON array + one image folder, read back by LLaVA's loader rules."""

from __future__ import annotations

import json
from collections import Counter

from dataprep.cli import main

from helpers.trainer_loaders import llava_read


def test_every_single_image_and_text_sample_reads_back_by_llavas_rules(mixture, tmp_path, capsys):
    manifest_path, _, originals = mixture
    out = tmp_path / "llava"
    assert main(["export", "llava", str(manifest_path), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    kept = [o for o in originals if len(o.images) <= 1]
    assert summary["left_out"] == {"multi_image": {"mine": 1, "twice": 2}}  # LLaVA opens one image
    assert summary["samples"] == summary["records"] == len(kept) and "lengths" not in summary

    records = json.loads((out / "llava.json").read_text())
    assert Counter((r["id"], json.dumps(r["conversations"])) for r in records) == Counter(
        (o.id, json.dumps(o.conversations)) for o in kept
    )  # the turns as the shards hold them
    seen = llava_read(out / "llava.json", image_folder=out / "images")
    assert Counter(s.images for s in seen) == Counter(tuple(o.images) for o in kept)
    later = next(s for s in seen if s.turns[0][1] == "Hello there.")  # LLaVA keeps the image in the
    assert later.turns[2][1] == "<image>\nWhat is this?"  # turn that asks about it
    assert next(s.turns[0][1] for s in seen if "Look" in s.turns[0][1]) == "<image>\nLook:  here"
