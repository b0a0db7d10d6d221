"""Reading a recipe file: YAML into the recipe's models, adapter options checked against the
registry, errors that name file, line and field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from tokenizers import Tokenizer

from dataprep.recipe.model import Recipe, SourceEntry
from dataprep.recipe.upstreams import MANIFESTS, UpstreamError, load_catalogue
from dataprep.recipe.yaml_file import (
    FileProblems,
    Problem,
    did_you_mean,
    parse_mapping,
    problem_at,
    read_text,
    validation_problems,
)
from dataprep.sources import registry
from dataprep.tokens import tokenizer_file


class RecipeError(FileProblems):
    """A recipe that cannot be built; every problem names its field and, when known, its line."""

    what = "invalid recipe"
    whole = "<recipe>"


def load_recipe(path: Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read, validate and check a recipe file; raise `RecipeError` listing every problem."""
    path = Path(path)
    return parse_recipe(read_text(path, RecipeError), path, overrides)


def parse_recipe(text: str, path: Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Validate and check recipe text (YAML); `path` names it in errors, with line numbers;
    `overrides` set dotted fields first (e.g. `{"output.dir": "out"}`)."""
    data, tree = parse_mapping(text, path, RecipeError)
    return recipe_from_data(data, path, overrides, tree)


def recipe_from_data(
    data: dict[str, Any], path: Path, overrides: dict[str, Any] | None = None, tree: yaml.Node | None = None
) -> Recipe:
    """Validate and check a recipe given as data (e.g. the one a manifest records; no line numbers
    without its YAML `tree`); `path` names it in errors."""
    data = copy.deepcopy(data)  # overrides are set on a copy
    for dotted, value in (overrides or {}).items():
        if problem := _set_dotted(data, dotted, value):
            raise RecipeError(path, [problem_at(tuple(problem.split(".")), "is not a mapping", tree)])
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(path, validation_problems(error, tree, model=Recipe)) from None
    problems = _check_sources(recipe, tree) + _check_upstreams(recipe, tree) + _check_tokenizer(recipe, tree)
    if problems:
        raise RecipeError(path, problems)
    return recipe


def _check_sources(recipe: Recipe, tree: yaml.Node | None) -> list[Problem]:
    """The sources' and the eval sets' entries: distinct labels, known adapters, valid options, paths."""
    adapters = registry()
    problems = []
    labels: dict[str, str] = {}
    listed = [(("sources", index), entry) for index, entry in enumerate(recipe.sources)]
    if recipe.decontaminate:
        evals = enumerate(recipe.decontaminate.eval_sets)
        listed += [(("decontaminate", "eval_sets", index), entry) for index, entry in evals]
    for loc, entry in listed:
        where = " ".join(map(str, loc))
        if (first := labels.setdefault(entry.label, where)) != where:
            message = f"{first} and {where} are both named {entry.label!r}: give each a distinct `name`"
            problems.append(problem_at((*loc, "name" if entry.name else "source"), message, tree))
        adapter = adapters.get(entry.source)
        if adapter is None:
            known = ", ".join(adapters)
            guess = did_you_mean(entry.source, adapters)
            problems.append(
                problem_at((*loc, "source"), f"unknown source {entry.source!r}{guess} (known: {known})", tree)
            )
            continue
        try:
            adapter.Options.model_validate(entry.options)
        except ValidationError as error:
            entry_keys = SourceEntry.model_fields
            problems.extend(validation_problems(error, tree, loc, adapter.Options, also_known=entry_keys))
        root = recipe.source_root(entry)
        if not root.exists() and not entry.fetch and not entry.upstreams:
            problems.append(problem_at((*loc, "path"), f"{root} does not exist", tree))
    return problems


def _check_upstreams(recipe: Recipe, tree: yaml.Node | None) -> list[Problem]:
    """Every name in an entry's `upstreams` has a manifest."""
    if not any(entry.upstreams for entry in recipe.sources):
        return []
    try:
        known = load_catalogue(recipe_manifests(recipe))
    except UpstreamError as error:
        found = "; ".join(
            f"{error.path}{f':{p.line}' if p.line else ''}: {p.message}" for p in error.problems
        )
        return [problem_at(("manifests",), found, tree)]
    return [
        problem_at(
            ("sources", index, "upstreams", position),
            f"unknown upstream {name!r} (manifests in {recipe_manifests(recipe)}: {', '.join(known)})",
            tree,
        )
        for index, entry in enumerate(recipe.sources)
        for position, name in enumerate(entry.upstreams)
        if name not in known
    ]


def recipe_manifests(recipe: Recipe) -> Path:
    """The folder of the upstream manifests a recipe's entries name."""
    return Path(recipe.manifests).absolute() if recipe.manifests else MANIFESTS


def _check_tokenizer(recipe: Recipe, tree: yaml.Node | None) -> list[Problem]:
    if recipe.tokens is None:
        return []
    file = tokenizer_file(Path(recipe.tokens.tokenizer))
    try:
        Tokenizer.from_file(str(file))
    except Exception as error:  # tokenizers raises a bare Exception for unreadable files
        message = f"{file} does not exist" if not file.exists() else f"{file} is not a tokenizer: {error}"
        return [problem_at(("tokens", "tokenizer"), message, tree)]
    return []


def source_options(entry: SourceEntry) -> Any:
    """The adapter options model of a validated entry."""
    return registry()[entry.source].Options.model_validate(entry.options)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> str | None:
    """Set a dotted field; return the dotted parent that is not a mapping, if one is in the way."""
    *parents, last = dotted.split(".")
    for depth, part in enumerate(parents, 1):
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            return ".".join(parents[:depth])
    data[last] = value
    return None
