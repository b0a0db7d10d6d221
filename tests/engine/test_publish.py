"""An output in a store: its work folder, the store's safety check, uploads that replace exactly the
objects that changed or went (built in process against a loopback S3 server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataprep.contract.store import LocationError, ObjectPath
from dataprep.engine.build import build
from dataprep.engine.publish import check_store, list_store, publish, unpublish, work_folder
from dataprep.engine.runner import BuildError, InProcessRunner
from dataprep.engine.settings import WORK_DIR, BuildSettings
from dataprep.recipe.load import load_recipe

from helpers.loopback_s3 import build_files, objects
from helpers.upstream import recipe_yaml

BUCKET = "engine"


def test_a_work_folder_is_given_or_a_cache_folder_keyed_by_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first, second = ObjectPath("s3://b/one"), ObjectPath("s3://b/two")
    assert work_folder(first, "here", joined_cluster=True) == Path("here")
    assert work_folder(first, None, joined_cluster=False).parent == tmp_path / "dataprep" / "outputs"
    assert (
        work_folder(first, None, False) == work_folder(first, None, False) != work_folder(second, None, False)
    )
    with pytest.raises(LocationError, match="needs --work-dir"):
        work_folder(first, None, joined_cluster=True)


def test_a_store_a_build_could_damage_is_refused(s3, tmp_path):
    s3.create_bucket(BUCKET)
    with pytest.raises(BuildError, match="bucket s3://nowhere not found"):
        check_store(ObjectPath("s3://nowhere/x"), tmp_path)
    s3.put(f"{BUCKET}/a-file", b"x")
    with pytest.raises(BuildError, match="is an object, not a folder"):
        check_store(ObjectPath(f"s3://{BUCKET}/a-file"), tmp_path)
    s3.put(f"{BUCKET}/theirs/notes.txt", b"x")
    with pytest.raises(BuildError, match="holds objects but no dataprep build"):
        check_store(ObjectPath(f"s3://{BUCKET}/theirs"), tmp_path)

    mine = ObjectPath(f"s3://{BUCKET}/mine")
    check_store(mine, tmp_path)  # empty: taken, and recorded as this work folder's
    assert (tmp_path / WORK_DIR / "stores.json").read_text() == f'["{mine.url}"]'
    s3.put(f"{BUCKET}/mine/shards/x.idx.json", b"{}")  # a build killed before its first manifest
    check_store(mine, tmp_path)
    with pytest.raises(BuildError, match="holds objects"):
        check_store(mine, tmp_path / "another-work-folder")


def test_publish_uploads_a_whole_file_listed_with_its_stamp_and_unpublish_forgets_missing_objects(
    s3, tmp_path
):
    s3.create_bucket(BUCKET)
    local = tmp_path / "data.bin"
    local.write_bytes(bytes(range(256)) * 4000)
    target = ObjectPath(f"s3://{BUCKET}/published/data.bin")
    stamp = publish(local, target)
    assert target.read_bytes() == local.read_bytes() and list_store(target.parent) == {"data.bin": stamp}
    assert stamp.size == local.stat().st_size
    unpublish([target, target.with_name("never.bin")])
    assert list_store(target.parent) == {}


def test_a_rerun_uploads_again_exactly_the_objects_that_changed_or_went(s3, upstream, tmp_path):
    s3.create_bucket(BUCKET)
    data_root, _ = upstream
    store = ObjectPath(f"s3://{BUCKET}/rerun")
    recipe_file = tmp_path / "mix.yaml"
    recipe_file.write_text(recipe_yaml("mix", data_root, store.url, shard_size=3))  # type: ignore[arg-type]
    settings = BuildSettings(out=tmp_path / "work", store=store, progress=False)
    manifest = build(load_recipe(recipe_file), settings, InProcessRunner())
    first, second = manifest.shards[0], manifest.shards[1]
    s3.delete(f"{BUCKET}/rerun/{first.path}")
    s3.put(f"{BUCKET}/rerun/{second.index}", b"{}")

    before = len(s3.writes())
    build(load_recipe(recipe_file), settings, InProcessRunner())
    paths = [write.split()[1].split("?")[0] for write in s3.writes()[before:]]
    prefix = f"/{BUCKET}/rerun/"
    changed = {path.removeprefix(prefix) for path in paths if not path.endswith("/")}  # folder markers aside
    # rejects.jsonl, the card and the wids index are as they were: not uploaded again (then edited,
    # deleted in the store: uploaded again)
    assert changed == {first.path, first.index, second.path, second.index, "manifest.json"}
    assert f"DELETE /{BUCKET}/rerun/manifest.json" in s3.writes()[before:]  # first, before any upload
    assert objects(store) == build_files(settings.out)

    s3.put(f"{BUCKET}/rerun/README.md", b"an edited card")
    s3.delete(f"{BUCKET}/rerun/wids.json")
    s3.delete(f"{BUCKET}/rerun/manifest.json")
    before = len(s3.writes())
    build(load_recipe(recipe_file), settings, InProcessRunner())
    assert s3.uploads(before, f"{BUCKET}/rerun") == {"README.md", "wids.json", "manifest.json"}
    assert objects(store) == build_files(settings.out)
