"""Reading a recipe file: YAML into the recipe's models, adapter options checked against the
registry, errors that name file, line and field."""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from tokenizers import Tokenizer

from dataprep.recipe.model import Recipe, SourceEntry
from dataprep.sources import registry
from dataprep.tokens import tokenizer_file


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    line: int | None


class RecipeError(Exception):
    """A recipe that cannot be built; every problem names its field and, when known, its line."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        lines = [
            f"{path}{f':{problem.line}' if problem.line else ''}: {problem.field or '<recipe>'}: {problem.message}"
            for problem in problems
        ]
        super().__init__("invalid recipe\n" + "\n".join(lines))


def load_recipe(path: Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read, validate and check a recipe file; raise `RecipeError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RecipeError(path, [Problem("", str(error), None)]) from None
    except UnicodeDecodeError as error:
        raise RecipeError(path, [Problem("", f"not UTF-8 text (byte {error.start})", None)]) from None
    return parse_recipe(text, path, overrides)


def parse_recipe(text: str, path: Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Validate and check recipe text (YAML); `path` names it in errors, with line numbers;
    `overrides` set dotted fields first (e.g. `{"output.dir": "out"}`)."""
    try:
        data = yaml.safe_load(_named(text, path))
        tree = yaml.compose(_named(text, path))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise RecipeError(path, [Problem("", str(error), mark.line + 1 if mark else None)]) from None
    if not isinstance(data, dict):
        raise RecipeError(path, [Problem("", "a recipe is a YAML mapping", 1)])
    duplicates = list(_duplicate_keys(tree, ()))
    if duplicates:
        raise RecipeError(path, duplicates)
    return recipe_from_data(data, path, overrides, tree)


def recipe_from_data(
    data: dict[str, Any], path: Path, overrides: dict[str, Any] | None = None, tree: yaml.Node | None = None
) -> Recipe:
    """Validate and check a recipe given as data (e.g. the one a manifest records; no line numbers
    without its YAML `tree`); `path` names it in errors."""
    data = copy.deepcopy(data)  # overrides are set on a copy
    for dotted, value in (overrides or {}).items():
        if problem := _set_dotted(data, dotted, value):
            raise RecipeError(path, [_problem(tuple(problem.split(".")), "is not a mapping", tree)])
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(path, _problems(error, tree)) from None
    problems = _check_sources(recipe, tree) + _check_tokenizer(recipe, tree)
    if problems:
        raise RecipeError(path, problems)
    return recipe


def _named(text: str, path: Path) -> io.StringIO:
    """The text as a stream named after its file, so YAML errors say where they are."""
    stream = io.StringIO(text)
    stream.name = str(path)
    return stream


def _check_sources(recipe: Recipe, tree: yaml.Node) -> list[Problem]:
    adapters = registry()
    problems = []
    labels: dict[str, int] = {}
    for index, entry in enumerate(recipe.sources):
        loc: tuple[Any, ...] = ("sources", index)
        if (first := labels.setdefault(entry.label, index)) != index:
            message = (
                f"sources {first} and {index} are both named {entry.label!r}: give each a distinct `name`"
            )
            problems.append(_problem((*loc, "name" if entry.name else "source"), message, tree))
        adapter = adapters.get(entry.source)
        if adapter is None:
            known = ", ".join(adapters)
            problems.append(
                _problem((*loc, "source"), f"unknown source {entry.source!r} (known: {known})", tree)
            )
            continue
        try:
            adapter.Options.model_validate(entry.options)
        except ValidationError as error:
            problems.extend(_problems(error, tree, prefix=loc))
        root = recipe.source_root(entry)
        if not root.exists() and not entry.fetch:
            problems.append(_problem((*loc, "path"), f"{root} does not exist", tree))
    return problems


def _check_tokenizer(recipe: Recipe, tree: yaml.Node) -> list[Problem]:
    if recipe.tokens is None:
        return []
    file = tokenizer_file(Path(recipe.tokens.tokenizer))
    try:
        Tokenizer.from_file(str(file))
    except Exception as error:  # tokenizers raises a bare Exception for unreadable files
        message = f"{file} does not exist" if not file.exists() else f"{file} is not a tokenizer: {error}"
        return [_problem(("tokens", "tokenizer"), message, tree)]
    return []


def source_options(entry: SourceEntry) -> Any:
    """The adapter options model of a validated entry."""
    return registry()[entry.source].Options.model_validate(entry.options)


def _problems(error: ValidationError, tree: yaml.Node, prefix: tuple[Any, ...] = ()) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = (*prefix, *(part for part in item["loc"] if not _is_union_tag(part)))
        problems.append(_problem(loc, item["msg"], tree))
    return problems


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _problem(loc: tuple[Any, ...], message: str, tree: yaml.Node) -> Problem:
    return Problem(".".join(str(part) for part in loc), message, _line_of(tree, loc))


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc`, or of its nearest existing parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _duplicate_keys(node: yaml.Node, loc: tuple[Any, ...]) -> Iterator[Problem]:
    """Keys given twice in one mapping (YAML loaders silently keep the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                yield Problem(
                    ".".join(map(str, (*loc, key.value))), "key given twice", key.start_mark.line + 1
                )
            seen.add(key.value)
            yield from _duplicate_keys(value, (*loc, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> str | None:
    """Set a dotted field; return the dotted parent that is not a mapping, if one is in the way."""
    *parents, last = dotted.split(".")
    for depth, part in enumerate(parents, 1):
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            return ".".join(parents[:depth])
    data[last] = value
    return None
