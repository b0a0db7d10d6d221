"""The mixture plan: proportions per shard, a plan too large for memory."""

from __future__ import annotations

import pytest

from dataprep.engine.build import build
from dataprep.engine.runner import BuildError
from dataprep.engine.settings import BuildSettings
from dataprep.recipe.load import load_recipe

from helpers.builds import build_recipe
from helpers.upstream import recipe_yaml


def test_every_shard_carries_the_recipe_proportions(ray_cluster, upstream, tmp_path):
    data_root, facts = upstream
    twice = """  - source: conversations
    name: again
    path: mine
    file: train.jsonl
    image_root: images
    take: 5
    repeat: 3
"""
    _, manifest = build_recipe(tmp_path, data_root, shard_size=5, extra_sources=twice)
    kept = len(facts["expected"])
    in_mixture = {source.name: source.in_mixture for source in manifest.sources}
    assert in_mixture == {"mine": kept, "again": 15}
    total = kept + 15
    for shard in manifest.shards:
        for name, count in shard.per_source.items():
            assert abs(count - in_mixture[name] * shard.samples / total) <= 1


def test_a_mixture_too_large_to_plan_is_a_build_error(ray_cluster, upstream, tmp_path):
    """A typo such as `repeat: 1000000000000` ends in an error naming take/repeat, not a traceback."""
    data_root, _ = upstream
    recipe_file = tmp_path / "huge.yaml"
    recipe_file.write_text(
        recipe_yaml("huge", data_root, tmp_path / "out").replace(
            "    name: mine\n", "    name: mine\n    repeat: 1000000000000\n"
        )
    )
    with pytest.raises(
        BuildError, match=r"a mixture of [\d,]+ samples does not fit in memory: check `take` and `repeat`"
    ):
        build(load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", progress=False))
    assert not (tmp_path / "out" / "shards").exists()
