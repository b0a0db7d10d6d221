"""The inputs of one recipe entry: required, files, named once, their units listed; inputs that appear later."""

from __future__ import annotations

import os

import pytest

from dataprep.engine import entry as entry_module
from dataprep.engine.build import build
from dataprep.engine.entry import adapter_of, entry_key, prepare_entries, require_inputs
from dataprep.engine.runner import BuildError, InProcessRunner
from dataprep.engine.settings import BuildSettings
from dataprep.recipe.load import load_recipe

from helpers.builds import build_recipe
from helpers.upstream import recipe_yaml, write_conversations


def test_an_input_that_is_a_pipe_a_folder_or_a_link_loop_fails_the_build_before_it_is_hashed(
    upstream, tmp_path
):
    data_root, _ = upstream
    os.mkfifo(tmp_path / "pipe.jsonl")  # hashing it would wait for a writer forever
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "questions").mkdir()
    (tmp_path / "questions" / "0.png.json").symlink_to("0.png.json")  # a loop: found by a glob
    extra = "".join(
        f"  - {{source: conversations, name: {name}, path: {tmp_path}, file: {name}.jsonl}}\n"
        for name in ("pipe", "folder")
    )
    extra += f"  - {{source: ai2d, name: loop, path: {tmp_path}}}\n"
    (tmp_path / "odd.yaml").write_text(recipe_yaml("odd", data_root, tmp_path / "out", extra_sources=extra))
    with pytest.raises(BuildError) as caught:
        require_inputs(load_recipe(tmp_path / "odd.yaml"))
    assert str(caught.value) == (
        "required inputs are not files:\n"
        f"pipe: {tmp_path / 'pipe.jsonl'} is a named pipe, not a file\n"
        f"folder: {tmp_path / 'folder.jsonl'} is a folder, not a file\n"
        f"loop: {tmp_path / 'questions' / '0.png.json'} cannot be opened: Too many levels of symbolic links"
    )


@pytest.mark.parametrize("files", ["[train.jsonl, ./train.jsonl]", "[train.jsonl, train.jsonl]"])
def test_an_input_named_twice_is_a_build_error_not_read_twice(upstream, tmp_path, files):
    data_root, _ = upstream
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(
        recipe_yaml("twice", data_root, tmp_path / "out").replace("file: train.jsonl", f"files: {files}")
    )
    with pytest.raises(BuildError, match=r"mine: its options name .*train.jsonl twice"):
        prepare_entries(
            load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", progress=False), InProcessRunner()
        )


def test_a_file_an_adapter_cannot_list_units_from_is_a_build_error_naming_the_source(ray_cluster, tmp_path):
    from dataprep.fixtures import synthdog_en

    synthdog_en.generate(tmp_path / "up" / "synthdog_en", seed=0)
    shard = sorted((tmp_path / "up" / "synthdog_en" / "data").glob("train-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:3000])
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(
        f"name: cut\ndata_root: {tmp_path / 'up'}\noutput: {{dir: {tmp_path / 'out'}}}\n"
        "sources:\n  - source: synthdog_en\n    path: synthdog_en\n    shards: [0]\n"
    )
    with pytest.raises(
        BuildError,
        match=r"synthdog_en: cannot list its work units: .*train-00000-of-00084-\w+\.parquet: not a readable parquet file",
    ):
        build(load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", progress=False))


def test_images_that_appear_after_a_build_are_picked_up_by_the_next(ray_cluster, tmp_path):
    write_conversations(tmp_path / "up" / "mine")
    _, before = build_recipe(tmp_path, tmp_path / "up")
    (tmp_path / "up/mine/images/nowhere.jpg").write_bytes(
        (tmp_path / "up/mine/images/img_001.jpg").read_bytes()
    )
    _, after = build_recipe(tmp_path, tmp_path / "up")
    (was,), (now,) = before.sources, after.sources
    assert was.rejected["image_missing"] == 1 and "image_missing" not in now.rejected
    assert now.kept == was.kept + 1 and now.read == was.read


def test_parts_made_by_another_resampler_are_not_reused(upstream, tmp_path, monkeypatch):
    """Re-encoded pixels depend on the resampler: its name is in the part key."""
    data_root, _ = upstream
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(recipe_yaml("resampled", data_root, tmp_path / "out"))
    recipe = load_recipe(recipe_file)
    adapter = adapter_of(recipe, recipe.sources[0])
    key = entry_key(adapter, recipe, None)
    assert entry_key(adapter, recipe, None) == key
    monkeypatch.setattr(entry_module, "RESAMPLER", "another-resampler")
    assert entry_key(adapter, recipe, None) != key
