"""Reading a YAML file for validation: its data and node tree, keys given twice, and pydantic errors
turned into problems that name the field and its line."""

from __future__ import annotations

import difflib
import io
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    line: int | None


class FileProblems(Exception):
    """A file that cannot be used; every problem names its field and, when known, its line."""

    what = "invalid file"
    whole = "<file>"  # the field named by a problem of the whole file

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        lines = [
            f"{path}{f':{problem.line}' if problem.line else ''}: {problem.field or self.whole}: {problem.message}"
            for problem in problems
        ]
        super().__init__(f"{self.what}\n" + "\n".join(lines))


def read_text(path: Path, error: type[FileProblems]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as failure:
        raise error(path, [Problem("", str(failure), None)]) from None
    except UnicodeDecodeError as failure:
        raise error(path, [Problem("", f"not UTF-8 text (byte {failure.start})", None)]) from None


def parse_mapping(text: str, path: Path, error: type[FileProblems]) -> tuple[dict[str, Any], yaml.Node]:
    """The YAML mapping in `text` and its node tree; `error` lists unparsable text or repeated keys."""
    try:
        data = yaml.safe_load(_named(text, path))
        tree = yaml.compose(_named(text, path))
    except yaml.YAMLError as failure:
        mark = getattr(failure, "problem_mark", None)
        raise error(path, [Problem("", str(failure), mark.line + 1 if mark else None)]) from None
    if not isinstance(data, dict):
        raise error(path, [Problem("", "expected a YAML mapping", 1)])
    duplicates = list(_duplicate_keys(tree, ()))
    if duplicates:
        raise error(path, duplicates)
    return data, tree


def _named(text: str, path: Path) -> io.StringIO:
    """The text as a stream named after its file, so YAML errors say where they are."""
    stream = io.StringIO(text)
    stream.name = str(path)
    return stream


def validation_problems(
    error: ValidationError,
    tree: yaml.Node | None,
    prefix: tuple[Any, ...] = (),
    model: type[BaseModel] | None = None,
    also_known: Iterable[str] = (),
) -> list[Problem]:
    """Pydantic's errors as problems at their fields; an unknown key of `model` (or of a model
    nested in it) says which known key it may be a misspelling of (`also_known` adds keys that are
    valid at the top level besides the model's own)."""
    problems = []
    for item in error.errors():
        parts = tuple(part for part in item["loc"] if not _is_union_tag(part))
        message = item["msg"]
        if item["type"] == "extra_forbidden" and model is not None:
            known = _known_keys(model, parts[:-1]) + (list(also_known) if len(parts) == 1 else [])
            message += did_you_mean(str(parts[-1]), known)
        problems.append(problem_at((*prefix, *parts), message, tree))
    return problems


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`" (did you mean 'x'?)"` for the closest of `known` to a misspelt `name`, else ""."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found by following `loc` (field names; list indexes skipped)
    from `model`; none when `loc` leads elsewhere."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        current = _model_in(field.annotation) if field else None
    return list(current.model_fields) if current else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The first pydantic model inside a field's type (through Optional, lists, tuples, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        if found := _model_in(argument):
            return found
    return None


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def problem_at(loc: tuple[Any, ...], message: str, tree: yaml.Node | None) -> Problem:
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
