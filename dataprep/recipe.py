"""The recipe: a YAML file validated into pydantic models, with errors that name file, line and field."""

from __future__ import annotations

import copy
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from dataprep.files import canonical_json

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
TAKE_SCHEMA = {
    "anyOf": [
        {"const": "all"},
        {"type": "integer", "minimum": 0},
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    ],
    "description": "all | a count | a fraction in (0, 1]",
}
LOCATION_FIELDS: dict[str, Any] = {
    "data_root": True,
    "output": {"dir"},
    "tokens": {"tokenizer"},
    "sources": {"__all__": {"fetch"}},
}


class Strict(BaseModel):
    """Unknown keys are errors; numbers and switches are not read from booleans or strings."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class OutputSpec(Strict):
    dir: str = Field(description="output folder (relative to the working directory)")
    shard_size: Annotated[int, Field(gt=0, strict=True)] = 1000


class ImagePolicy(Strict):
    """Originals are kept when valid, of a kept format and within `max_side`; others are re-encoded."""

    max_side: Annotated[int, Field(gt=0)] | None = None
    format: Literal["jpeg", "png", "webp"] = "jpeg"
    quality: Annotated[int, Field(ge=1, le=100)] = 95
    max_pixels: Annotated[int, Field(gt=0)] = 89_478_485


class TokenSpec(Strict):
    """Count tokens per sample for the manifest's statistics."""

    tokenizer: str = Field(
        description="a Hugging Face `tokenizer.json`, or a folder holding one (relative to the working directory)"
    )
    image_tokens: Annotated[int, Field(ge=0)] = Field(
        0, description="tokens each image stands for in the model's input (InternVL V1-2: 256)"
    )


def hub_parts(url: str) -> tuple[str, str, str, str, str]:
    """(kind, owner, name, revision, file) of `hf://<kind>/<owner>/<name>[@<revision>]/<file>`."""
    parts = url[len("hf://") :].split("/", 3)
    if len(parts) < 4 or parts[0] not in ("datasets", "models", "spaces") or not all(parts):
        raise ValueError("expected hf://datasets/<owner>/<name>[@revision]/<file>")
    kind, owner, name, file = parts
    name, _, revision = name.partition("@")
    return kind, owner, name, revision or "main", file


class Download(Strict):
    """One upstream file to fetch into the source's folder before it is read."""

    url: str = Field(
        pattern=r"^(https?|hf)://", description="http(s):// or hf://datasets/<owner>/<name>/<file>"
    )
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="pinned checksum; without one, the checksum seen is recorded in the manifest"
    )
    to: str | None = Field(None, description="path inside the source folder (default: the URL's file name)")
    unpack: bool = Field(False, description="zip/tar archive: extract into `to` (a folder) instead")

    @field_validator("to")
    @classmethod
    def _relative(cls, to: str | None) -> str | None:
        if to is not None and (Path(to).is_absolute() or ".." in Path(to).parts):
            raise ValueError("must be a relative path inside the source folder (no `..`)")
        return to

    @model_validator(mode="after")
    def _lands_in_a_named_file(self) -> Download:
        if self.url.startswith("hf://"):
            hub_parts(self.url)
        try:
            self.file_name  # noqa: B018 (raises when the URL names no file)
        except ValueError:
            if self.unpack:  # `to` is the folder to unpack into; the archive is named by its URL
                raise ValueError("an archive's URL must end in its file name (e.g. data.zip)") from None
            if self.to is None:
                raise
        return self

    @property
    def file_name(self) -> str:
        """The URL's last path segment (decoded): the file's name unless `to` gives another."""
        if self.url.startswith("hf://"):
            name = PurePosixPath(hub_parts(self.url)[4]).name
        else:
            name = unquote(PurePosixPath(urlsplit(self.url).path).name)
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError("the URL names no plain file name; give `to`")
        return name

    @property
    def to_folder(self) -> str:
        return self.to or "."


class SourceEntry(BaseModel):
    """One mixture component; keys beyond the common ones are the adapter's options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    source: str
    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    path: str
    take: Annotated[Literal["all"] | int | float, WithJsonSchema(TAKE_SCHEMA)] = "all"
    repeat: Annotated[int, Field(ge=1, strict=True)] = 1
    fetch: tuple[Download, ...] = ()
    expect: Annotated[int, Field(ge=0, strict=True)] | None = Field(
        None, description="samples this entry should contribute (e.g. the published count)"
    )

    @field_validator("take", mode="plain")
    @classmethod
    def _count_or_fraction(cls, take: Any) -> Any:
        """`all`, a count (an integer ≥ 0) or a fraction in (0, 1]; no booleans or strings of digits."""
        if take == "all" or (type(take) is int and take >= 0):
            return take
        if type(take) is float and 0.0 < take <= 1.0:
            return take
        raise ValueError(f"take is `all`, a count ≥ 0 or a fraction in (0, 1], not {take!r}")

    @property
    def label(self) -> str:
        return self.name or self.source

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Recipe(Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    seed: Annotated[int, Field(strict=True)] = 0
    data_root: str | None = Field(None, description="base of relative source paths (default: cwd)")
    output: OutputSpec
    image: ImagePolicy = ImagePolicy()
    tokens: TokenSpec | None = None
    sources: Annotated[list[SourceEntry], Field(min_length=1)]

    def source_root(self, entry: SourceEntry) -> Path:
        base = Path(self.data_root) if self.data_root else Path.cwd()
        return (base / entry.path).absolute()

    def content(self) -> dict[str, Any]:
        """The recipe without its locations (output folder, data root, download URLs): what the mixture
        depends on; the files themselves are recorded, with checksums, in the manifest."""
        return self.model_dump(mode="json", exclude=LOCATION_FIELDS)

    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.content())).hexdigest()


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
    from dataprep.sources import registry

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
    from tokenizers import Tokenizer

    from dataprep.tokens import tokenizer_file

    file = tokenizer_file(Path(recipe.tokens.tokenizer))
    try:
        Tokenizer.from_file(str(file))
    except Exception as error:  # tokenizers raises a bare Exception for unreadable files
        message = f"{file} does not exist" if not file.exists() else f"{file} is not a tokenizer: {error}"
        return [_problem(("tokens", "tokenizer"), message, tree)]
    return []


def source_options(entry: SourceEntry) -> Any:
    """The adapter options model of a validated entry."""
    from dataprep.sources import registry

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
