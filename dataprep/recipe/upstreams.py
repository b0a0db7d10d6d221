"""Upstream manifests (`manifests/<name>.yaml`): where one annotation or image set is published, its
licence, the files to fetch into its conventional folder under the data root, and the steps a person
takes for what cannot be fetched (a login, a licence click, no stable public URL)."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from dataprep.recipe.model import NAME_PATTERN, Download, Strict
from dataprep.recipe.yaml_file import (
    FileProblems,
    Problem,
    parse_mapping,
    problem_at,
    read_text,
    validation_problems,
)

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"  # the project's own, beside the package
SIZE = re.compile(r"^~?(\d+(?:\.\d+)?) (KB|MB|GB|TB)$")
UNITS = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


class UpstreamError(FileProblems):
    what = "invalid upstream manifest"
    whole = "<manifest>"


def size_bytes(size: str | None) -> int | None:
    """`"875 MB"` / `"~18 GB"` (the publisher's figure) → bytes, approximately."""
    if size is None:
        return None
    number, unit = SIZE.fullmatch(size).groups()  # type: ignore[union-attr]  (validated)
    return round(float(number) * UNITS[unit])


Size = Annotated[
    str, Field(pattern=SIZE.pattern, description="the publisher's figure, e.g. `875 MB`, `~18 GB`")
]


class UpstreamFile(Download):
    """A published file, fetched into the upstream's folder (`to` and `members` relative to it)."""

    size: Size | None = None


class ManualFile(Strict):
    """One file a person downloads by hand."""

    name: str
    size: Size | None = None
    unpack: bool = False
    members: dict[str, str] = Field(
        default_factory=dict, description="archive folder → folder under the upstream's folder"
    )


class Manual(Strict):
    """What a person does for an upstream that cannot be fetched."""

    why: str = Field(description="why it is manual (login, licence click, no stable URL, …)")
    page: str = Field(description="where to start: a URL or the publisher's page by name")
    files: list[ManualFile] = Field(default_factory=list)
    steps: str = Field(description="what to do, ending with where the files go")


class Upstream(Strict):
    """One upstream: an annotation set or an image set, as its publisher ships it."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    kind: Literal["annotations", "images"]
    title: str
    page: str = Field(description="the publisher's page (or where the publication is described)")
    licence: str
    terms: str = Field(description="the terms of use, as the publisher states them")
    folder: str = Field(description="conventional folder under the data root")
    size: Size | None = Field(None, description="on disk, unpacked, where known")
    files: list[UpstreamFile] = Field([], description="fetched by `dataprep fetch`")
    manual: Manual | None = None
    present: Annotated[list[str], Field(min_length=1)] = Field(
        description="globs under `folder` that exist when the upstream is in place"
    )

    @field_validator("folder")
    @classmethod
    def _relative(cls, folder: str) -> str:
        if Path(folder).is_absolute() or ".." in Path(folder).parts:
            raise ValueError("must be a relative path under the data root (no `..`)")
        return folder

    @model_validator(mode="after")
    def _fetchable_or_manual(self) -> Upstream:
        if not self.files and self.manual is None:
            raise ValueError("give `files` to fetch or the `manual` steps")
        return self

    @property
    def public(self) -> bool:
        """Fetched completely by `dataprep fetch` (nothing for a person to do)."""
        return self.manual is None

    def downloads(self) -> list[Download]:
        return [Download.model_validate(file.model_dump(exclude={"size"})) for file in self.files]

    def root(self, data_root: Path) -> Path:
        return (data_root / self.folder).absolute()

    def missing(self, data_root: Path) -> list[str]:
        """The `present` globs that match nothing (an empty folder counts as missing)."""
        root = self.root(data_root)
        return [
            pattern
            for pattern in self.present
            if not any(_filled(Path(match)) for match in glob.glob(glob.escape(str(root)) + "/" + pattern))
        ]

    def approx_bytes(self) -> int | None:
        """Unpacked size if stated, else the sum of its files' stated sizes, else None."""
        if self.size:
            return size_bytes(self.size)
        sizes = [size_bytes(f.size) for f in self.files] + [
            size_bytes(f.size) for f in (self.manual.files if self.manual else [])
        ]
        return sum(sizes) if sizes and None not in sizes else None  # type: ignore[arg-type]


def _filled(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def load_upstream(path: Path) -> Upstream:
    """Read and validate one manifest; its `name` must be its file's stem."""
    data, tree = parse_mapping(read_text(path, UpstreamError), path, UpstreamError)
    try:
        upstream = Upstream.model_validate(data)
    except ValidationError as error:
        raise UpstreamError(path, validation_problems(error, tree, model=Upstream)) from None
    if upstream.name != path.stem:
        raise UpstreamError(path, [problem_at(("name",), f"must be the file's name, {path.stem!r}", tree)])
    return upstream


def load_catalogue(folder: Path | None = None) -> dict[str, Upstream]:
    """Every `*.yaml` manifest of `folder` (default: the project's `manifests/`), by name."""
    folder = Path(folder) if folder else MANIFESTS
    if not folder.is_dir():
        raise UpstreamError(folder, [Problem("", "is not a folder of upstream manifests", None)])
    return {upstream.name: upstream for upstream in map(load_upstream, sorted(folder.glob("*.yaml")))}
