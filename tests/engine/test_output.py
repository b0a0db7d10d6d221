"""The output folder: refused when a build could damage it, locked while one runs."""

from __future__ import annotations

import json
import shutil

import pytest

from dataprep.card import CARD, WIDS_INDEX
from dataprep.engine.build import build
from dataprep.engine.output import output_lock
from dataprep.engine.runner import BuildError
from dataprep.engine.settings import BuildSettings
from dataprep.recipe.load import load_recipe

from helpers.builds import build_into
from helpers.upstream import recipe_yaml


def test_a_folder_holding_other_files_is_refused_and_left_as_it_was(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    mine = tmp_path / "mine"
    (mine / "shards").mkdir(parents=True)
    for name in ("manifest.json", "rejects.jsonl", "shards/mix-000000.tar", "shards/notes.partial"):
        (mine / name).write_text("precious")
    with pytest.raises(BuildError, match="not empty and holds no dataprep build"):
        build_into(tmp_path, data_root, mine)
    assert sorted(p.read_text() for p in mine.rglob("*") if p.is_file()) == ["precious"] * 4
    with pytest.raises(BuildError, match="inside the folder of source mine"):
        build_into(tmp_path, data_root, data_root / "mine" / "out")
    assert not (data_root / "mine" / "out").exists()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(BuildError, match="is not a folder"):
        build_into(tmp_path, data_root, tmp_path / "a-file")


def test_a_build_that_fails_before_writing_shards_keeps_the_previous_manifest(
    ray_cluster, upstream, tmp_path
):
    data_root, _ = upstream
    out = tmp_path / "out"
    first = build_into(tmp_path, data_root, out)
    broken = recipe_yaml("mix", data_root, out).replace("file: train.jsonl", "file: absent.jsonl")
    (tmp_path / "broken.yaml").write_text(broken)
    with pytest.raises(BuildError, match="required inputs are missing"):
        build(load_recipe(tmp_path / "broken.yaml"), BuildSettings(out=out, progress=False))
    assert json.loads((out / "manifest.json").read_text())["content_sha256"] == first.content_sha256
    with output_lock(out), pytest.raises(BuildError, match="another build is writing to"):
        build_into(tmp_path, data_root, out)


def test_a_build_is_known_with_its_card_and_a_card_alone_is_no_build(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    out = tmp_path / "out"
    build_into(tmp_path, data_root, out)
    card = (out / CARD).read_bytes()
    shutil.rmtree(out / ".work")  # known by its manifest: the card it wrote is no foreign file
    build_into(tmp_path, data_root, out)
    assert (out / CARD).read_bytes() == card
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("manifest.json", ".work"))
    with pytest.raises(BuildError, match="not empty and holds no dataprep build"):
        build_into(tmp_path, data_root, copy)
    assert (copy / CARD).read_bytes() == card and (copy / WIDS_INDEX).exists()
    assert not (copy / ".work").exists()
