"""Builds of a recipe written from `upstream.recipe_yaml`, shared by the engine tests."""

from __future__ import annotations

from pathlib import Path

from dataprep.contract.manifest import Manifest
from dataprep.engine.build import build
from dataprep.engine.runner import Runner
from dataprep.engine.settings import BuildSettings
from dataprep.recipe.load import load_recipe

from helpers.upstream import recipe_yaml


def build_recipe(
    tmp_path: Path, data_root: Path, name: str = "mix", runner: Runner | None = None, **kwargs
) -> tuple[Path, Manifest]:
    """Build into `<tmp_path>/out-<name>` (on Ray, or on `runner`); the recipe is `<tmp_path>/<name>.yaml`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    recipe_file = tmp_path / f"{name}.yaml"
    out = tmp_path / f"out-{name}"
    recipe_file.write_text(recipe_yaml(name, data_root, out, **kwargs))
    manifest = build(load_recipe(recipe_file), BuildSettings(out=out, progress=False), runner)
    return out, manifest


def build_into(tmp_path: Path, data_root: Path, out: Path, name: str = "mix", **kwargs) -> Manifest:
    recipe_file = tmp_path / f"{name}-{out.name}.yaml"
    recipe_file.write_text(recipe_yaml(name, data_root, out, **kwargs))
    return build(load_recipe(recipe_file), BuildSettings(out=out, progress=False))
