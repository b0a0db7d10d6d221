"""The recipe's plain models: what a build is asked for, validated by pydantic (no YAML, no registry)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from dataprep.contract.store import location
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
    "manifests": True,
    "output": {"dir", "work_dir"},
    "tokens": {"tokenizer"},
    "sources": {"__all__": {"fetch", "upstreams"}},
}


class Strict(BaseModel):
    """Unknown keys are errors; numbers and switches are not read from booleans or strings."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class OutputSpec(Strict):
    dir: str = Field(
        description="output folder (relative to the working directory), or a store: s3://bucket/prefix, "
        "gs://bucket/prefix"
    )
    shard_size: Annotated[int, Field(gt=0, strict=True)] = 1000
    work_dir: str | None = Field(
        None,
        description="for an output in a store: the local folder the build is made in before it is uploaded "
        "(default: a cache folder keyed by the URL; on a joined Ray cluster, required: a folder every node sees)",
    )

    @field_validator("dir")
    @classmethod
    def _local_or_a_store(cls, value: str) -> str:
        location(value)  # LocationError (a ValueError) names an unsupported scheme
        return value


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


DRIVE_URL = re.compile(r"gdrive://([-\w]{10,})/([^/]+)")


def drive_parts(url: str) -> tuple[str, str]:
    """(file id, file name) of `gdrive://<id>/<name>`: a public Google Drive file and the name Drive
    gives it."""
    match = DRIVE_URL.fullmatch(url)
    if match is None:
        raise ValueError("expected gdrive://<file id>/<file name>")
    return match[1], match[2]


class Download(Strict):
    """One upstream file to fetch into the source's folder before it is read."""

    url: str = Field(
        pattern=r"^(https?|hf|gdrive)://",
        description="http(s)://, hf://datasets/<owner>/<name>[@<revision>]/<file> (a Hugging Face hub file), "
        "or gdrive://<file id>/<file name> (a public Google Drive file)",
    )
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="pinned checksum; without one, the checksum seen is recorded in the manifest"
    )
    to: str | None = Field(None, description="path inside the source folder (default: the URL's file name)")
    unpack: bool = Field(False, description="zip/tar archive: extract into `to` (a folder) instead")
    members: dict[str, str] = Field(
        default_factory=dict,
        description="with `unpack`: archive folder → folder under `to`; only members under these folders "
        "are extracted (default: every member, where the archive stores it)",
    )

    @field_validator("to")
    @classmethod
    def _relative(cls, to: str | None) -> str | None:
        if to is not None and (Path(to).is_absolute() or ".." in Path(to).parts):
            raise ValueError("must be a relative path inside the source folder (no `..`)")
        return to

    @field_validator("members")
    @classmethod
    def _relative_folders(cls, members: dict[str, str]) -> dict[str, str]:
        for path in (*members, *members.values()):
            if Path(path).is_absolute() or ".." in Path(path).parts:
                raise ValueError(f"{path!r} must be a relative path (no `..`)")
        return members

    @model_validator(mode="after")
    def _lands_in_a_named_file(self) -> Download:
        if self.members and not self.unpack:
            raise ValueError("`members` maps an archive's folders: it needs `unpack: true`")
        if self.url.startswith("hf://"):
            hub_parts(self.url)
        if self.url.startswith("gdrive://"):
            drive_parts(self.url)
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
        elif self.url.startswith("gdrive://"):
            name = drive_parts(self.url)[1]
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
    upstreams: tuple[Annotated[str, Field(pattern=NAME_PATTERN)], ...] = Field(
        (),
        description="upstream manifests (`manifests/<name>.yaml`) whose files are fetched into their "
        "conventional folders under `data_root` before this entry is read",
    )
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


class DecontaminateSpec(Strict):
    """Check the mixture against evaluation sets (read by adapters, as sources are) and itself."""

    mode: Literal["report", "drop"] = Field(
        "report", description="report overlaps in the manifest, or also drop them as `eval_overlap` rejects"
    )
    eval_sets: Annotated[list[SourceEntry], Field(min_length=1)] = Field(
        description="evaluation sets, as source entries (their labels distinct from the sources')"
    )
    image_distance: Annotated[int, Field(ge=0, le=7)] = Field(
        6, description="most pHash bits two images may differ in to be compared (≤ 7: found by the index)"
    )
    dhash_distance: Annotated[int, Field(ge=0, le=64)] = Field(
        16, description="most dHash bits a pHash candidate may differ in (the second, independent hash)"
    )
    picture_difference: Annotated[float, Field(ge=0, le=1)] = Field(
        0.2,
        description="largest share of differing pixels in a block of an eval overlap's two pictures, aligned",
    )
    ngram: Annotated[int, Field(ge=1, le=50)] = Field(5, description="words per n-gram of question text")
    question_overlap: Annotated[float, Field(gt=0, le=1)] = Field(
        0.8, description="share of an eval question's n-grams a training question holds to match it"
    )
    duplicates: bool = Field(
        True, description="also report near-duplicate images across sources and exact duplicate samples"
    )
    duplicate_distance: Annotated[int, Field(ge=0, le=7)] = Field(
        3, description="most pHash (and dHash) bits two images of the mixture may differ in to be duplicates"
    )

    @field_validator("eval_sets")
    @classmethod
    def _read_in_place(cls, eval_sets: list[SourceEntry]) -> list[SourceEntry]:
        for entry in eval_sets:
            if entry.fetch or entry.upstreams:
                raise ValueError(
                    f"eval set {entry.label!r}: eval sets are read where they are; `fetch` and "
                    "`upstreams` are for sources (download it with `dataprep fetch` of a recipe, or by hand)"
                )
        return eval_sets


class Recipe(Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    seed: Annotated[int, Field(strict=True)] = 0
    data_root: str | None = Field(None, description="base of relative source paths (default: cwd)")
    manifests: str | None = Field(
        None,
        description="folder of upstream manifests the entries' `upstreams` name (default: dataprep's own)",
    )
    output: OutputSpec
    image: ImagePolicy = ImagePolicy()
    tokens: TokenSpec | None = None
    sources: Annotated[list[SourceEntry], Field(min_length=1)]
    decontaminate: DecontaminateSpec | None = None

    def source_root(self, entry: SourceEntry) -> Path:
        return (self.root / entry.path).absolute()

    @property
    def root(self) -> Path:
        """The data root: base of the sources' paths and of the upstreams' conventional folders."""
        return Path(self.data_root).absolute() if self.data_root else Path.cwd()

    def content(self) -> dict[str, Any]:
        """The recipe without its locations (output folder, data root, download URLs): what the mixture
        depends on; the files themselves are recorded, with checksums, in the manifest."""
        exclude = LOCATION_FIELDS if self.decontaminate else {**LOCATION_FIELDS, "decontaminate": True}
        return self.model_dump(mode="json", exclude=exclude)

    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.content())).hexdigest()
