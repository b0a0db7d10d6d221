"""`dataprep export internvl`: read back by InternVL's loader rules (meta json, jsonl, `<image>`,
`repeat_time`, `length`), every sample kept; `--trainer v1_2` leaves multi-image samples out."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from dataprep.cli import main
from dataprep.contract.sample import ShardSample, Turn
from dataprep.export.internvl import internvl_line
from dataprep.export.samples import ExportSample
from dataprep.fixtures.tokenizer import write_tokenizer

from helpers.bridge_shards import build_shards
from helpers.export_build import LATER, LATER_AS_INTERNVL, Original
from helpers.trainer_loaders import LoaderError, Seen, internvl_read


def _as_internvl(original: Original) -> tuple:
    """What the trainer should see of a sample: its turns (the one image of `later` asked about in
    the first turn) and its images."""
    texts = (
        LATER_AS_INTERNVL if original.conversations == LATER else [t["value"] for t in original.conversations]
    )
    turns = tuple((turn["from"], text) for turn, text in zip(original.conversations, texts, strict=True))
    return turns, tuple(original.images)


def _token_length(tokenizer: Path, original: Original, image_tokens: int) -> int:
    encoder = Tokenizer.from_file(str(tokenizer))
    text = sum(
        len(encoder.encode(turn["value"].replace("<image>", ""), add_special_tokens=False).ids)
        for turn in original.conversations
    )
    return text + image_tokens * len(original.images)


def _export(manifest_path: Path, out: Path, capsys, *flags: str) -> dict:
    capsys.readouterr()
    assert main(["export", "internvl", str(manifest_path), "--out", str(out), *flags]) == 0
    return json.loads(capsys.readouterr().out)


def _seen_by_source(read: dict[str, list[Seen]]) -> dict[str, Counter]:
    return {source: Counter((s.turns, s.images) for s in samples) for source, samples in read.items()}


def test_every_sample_reads_back_by_internvls_rules_with_repeat_time_and_length(mixture, tmp_path, capsys):
    manifest_path, tokenizer, originals = mixture
    out = tmp_path / "internvl"
    summary = _export(manifest_path, out, capsys)
    record = json.loads((out / "export.json").read_text())
    assert record["complete"] is True and {k: record[k] for k in summary} == summary
    assert summary["samples"] == len(originals) and summary["left_out"] == {}
    assert summary["lengths"]["from"] == "build's token sidecars" and summary["lengths"]["image_tokens"] == 16

    meta = json.loads((out / "meta.json").read_text())
    assert summary["meta"] == meta
    assert {name: entry["repeat_time"] for name, entry in meta.items()} == {"mine": 1, "twice": 2}
    assert {name: entry["length"] for name, entry in meta.items()} == {"mine": 7, "twice": 7}
    assert len((out / "annotations" / "twice.jsonl").read_text().splitlines()) == 7  # not 14 copies
    assert all(not Path(entry["root"]).is_absolute() for entry in meta.values())

    read = internvl_read(out / "meta.json", cwd=out)
    expected: dict[str, Counter] = {}
    for original in originals:
        expected.setdefault(original.source, Counter())[_as_internvl(original)] += 1
    assert _seen_by_source(read) == expected
    lengths = {(s.turns, s.images): s.length for samples in read.values() for s in samples}
    assert lengths == {_as_internvl(o): _token_length(tokenizer, o, 16) for o in originals}
    images_on_disk = [path for path in (out / "images").rglob("*") if path.is_file()]
    assert len(images_on_disk) == sum(len(o.images) for o in originals if o.source == "mine") * 2  # once each

    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(out, moved)
    assert _seen_by_source(internvl_read(moved / "meta.json", cwd=moved)) == expected


def test_the_v1_2_trainer_mode_leaves_multi_image_samples_out_and_counts_them(mixture, tmp_path, capsys):
    manifest_path, _, originals = mixture
    _export(manifest_path, tmp_path / "current", capsys)
    with pytest.raises(LoaderError, match="a list fails"):  # the release trainer on the current layout
        internvl_read(tmp_path / "current" / "meta.json", tmp_path / "current", "v1_2")
    summary = _export(manifest_path, tmp_path / "v1_2", capsys, "--trainer", "v1_2")
    multi = Counter(o.source for o in originals if len(o.images) > 1)
    assert summary["left_out"] == {"multi_image": dict(multi)} and multi == {"mine": 1, "twice": 2}
    assert summary["samples"] == len(originals) - 3 and summary["trainer"] == "v1_2"
    read = internvl_read(tmp_path / "v1_2" / "meta.json", tmp_path / "v1_2", "v1_2")
    assert sum(map(len, read.values())) == len(originals) - 3
    assert all(len(s.images) <= 1 for samples in read.values() for s in samples)


def test_lengths_follow_the_tokenizer_and_image_tokens_asked_for(mixture, tmp_path, capsys):
    manifest_path, tokenizer, originals = mixture
    by_view = {_as_internvl(o): o for o in originals}

    def lengths(out: Path) -> dict:
        read = internvl_read(out / "meta.json", out)
        return {(s.turns, s.images): s.length for samples in read.values() for s in samples}

    summary = _export(manifest_path, tmp_path / "a", capsys, "--image-tokens", "256")
    assert summary["lengths"]["from"] == "build's token sidecars"  # re-weighted, not re-tokenized
    assert lengths(tmp_path / "a") == {v: _token_length(tokenizer, o, 256) for v, o in by_view.items()}

    other = write_tokenizer(tmp_path / "other" / "tokenizer.json", ["a b c d e f g"], vocab_size=40)
    summary = _export(manifest_path, tmp_path / "b", capsys, "--tokenizer", str(other.parent))
    assert summary["lengths"]["from"] == "tokenized" and summary["lengths"]["image_tokens"] == 256
    assert lengths(tmp_path / "b") == {v: _token_length(other, o, 256) for v, o in by_view.items()}

    summary = _export(manifest_path, tmp_path / "c", capsys, "--tokenizer", str(tokenizer))
    assert summary["lengths"]["from"] == "build's token sidecars"  # the build's own tokenizer


def test_base_prefixes_the_paths_the_trainer_opens_from_its_own_folder(mixture, tmp_path, capsys):
    manifest_path, _, originals = mixture
    summary = _export(manifest_path, tmp_path / "data" / "mix", capsys, "--base", "data/mix")
    assert summary["meta"]["mine"]["root"] == "data/mix/images/mine/"
    read = internvl_read(tmp_path / "data" / "mix" / "meta.json", cwd=tmp_path)
    assert sum(map(len, read.values())) == len(originals)


def test_a_single_image_placeholder_moves_to_the_first_turn_as_the_trainer_expects() -> None:
    def exported(images: list[str], texts: list[str]) -> ExportSample:
        turns = [Turn(("human", "gpt")[i % 2], text) for i, text in enumerate(texts)]
        sample = ShardSample("s", "x", images, [[4, 3]] * len(images), turns)
        return ExportSample("shards/mix-000000.tar", "k", sample, {}, "k", 0, None)

    later = [turn["value"] for turn in LATER]
    line = internvl_line(exported(["jpg"], later), ["images/s/k.jpg"])
    assert [turn["value"] for turn in line["conversations"]] == LATER_AS_INTERNVL
    assert (line["image"], line["width"], line["height"]) == ("k.jpg", 4, 3) and "length" not in line
    first = ["Look <image> here", "Seen."]
    assert [
        t["value"] for t in internvl_line(exported(["jpg"], first), ["images/s/k.jpg"])["conversations"]
    ] == first
    several = exported(["jpg", "1.jpg"], ["What?", "A.", "<image>\n<image>\nThese?", "B."])
    line = internvl_line(several, ["images/s/k.jpg", "images/s/k.1.jpg"])
    assert line["image"] == ["k.jpg", "k.1.jpg"] and line["conversations"][2]["value"].startswith(
        "<image>\n<image>"
    )


def test_a_build_without_token_counts_and_no_tokenizer_gives_lines_without_length(tmp_path, capsys):
    manifest_path = build_shards(tmp_path / "build", samples=4, per_shard=4)
    summary = _export(manifest_path, tmp_path / "out", capsys)
    assert "lengths" not in summary and summary["samples"] == 4
    read = internvl_read(tmp_path / "out" / "meta.json", tmp_path / "out")
    assert all(seen.length is None for samples in read.values() for seen in samples)
