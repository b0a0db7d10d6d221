"""A recipe's lock file: written sorted and readable, merged with an earlier lock, refused when damaged."""

from __future__ import annotations

import pytest

from dataprep.recipe.lock import LockError, lock_path, locked_file, read_lock, write_lock


def test_a_lock_is_written_beside_the_recipe_and_merged_with_the_earlier_one(tmp_path):
    path = lock_path(tmp_path / "recipes/mix.yaml")
    assert path == tmp_path / "recipes/mix.lock.json" and read_lock(path) == {}
    path.parent.mkdir()
    hub = locked_file("hf://datasets/o/n@v1/a.json", 3, "a" * 64)
    write_lock(path, [hub, locked_file("https://x.org/b.zip", 5, "b" * 64)])
    write_lock(path, [locked_file("https://x.org/b.zip", 6, "c" * 64)])  # a later fetch: b changed
    assert hub.revision == "v1"
    assert read_lock(path) == {
        "hf://datasets/o/n@v1/a.json": hub,
        "https://x.org/b.zip": locked_file("https://x.org/b.zip", 6, "c" * 64),
    }
    assert path.read_text().startswith('{\n  "files": [\n')


def test_a_damaged_lock_is_named(tmp_path):
    path = tmp_path / "mix.lock.json"
    path.write_text('{"files": [{"url": "https://x.org/b.zip"}]}')
    with pytest.raises(LockError, match=f"{path}: not a lock file"):
        read_lock(path)
