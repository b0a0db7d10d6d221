"""The manifest: what a build used and produced. Written last, read by every consumer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from dataprep.contract.store import Location, location
from dataprep.files import canonical_json

FORMAT_VERSION = (
    3  # 2: download provenance left out of the content hash; 3: reader files, citations, token sidecars
)
TIMESTAMP_FIELDS = {"build"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Artifact(Strict):
    """An upstream file a source read, pinned by size and sha256."""

    path: str
    bytes: int
    sha256: str


class DownloadReport(Strict):
    """A file the fetch stage put in place; `path` is relative to the source folder."""

    url: str
    path: str
    bytes: int
    sha256: str
    pinned: bool = Field(description="the recipe pinned this sha256 (else it is the one seen)")
    unpacked_files: int = 0
    revision: str | None = Field(None, description="the hub commit an hf:// file came from, when known")


class SourceReport(Strict):
    """Per recipe entry: what was read, kept, rejected (by reason) and put in the mixture."""

    name: str
    source: str
    adapter_version: str
    licence: str
    path: str
    take: int | float | str
    repeat: int
    read: int
    kept: int
    rejected: dict[str, int]
    reencoded_images: int
    in_mixture: int
    expected: int | None = Field(None, description="the recipe's `expect`; compare with in_mixture")
    share: float
    artifacts: list[Artifact]
    downloads: list[DownloadReport] = []
    citation: str | None = Field(None, description="how the publishers ask to be cited, when known")


def _inside_the_build(value: str) -> str:
    """Readers join these paths to the manifest's folder: they must not lead out of it."""
    if not value or Path(value).is_absolute() or ".." in Path(value).parts:
        raise ValueError(f"{value!r} is not a path inside the manifest's folder")
    return value


BuildPath = Annotated[str, AfterValidator(_inside_the_build)]
"""A path relative to the manifest's folder, inside it."""


class ShardReport(Strict):
    path: BuildPath = Field(description="relative to the manifest's folder")
    samples: int
    bytes: int
    sha256: str
    per_source: dict[str, int]
    index: BuildPath | None = Field(
        None, description="sidecar index (member offsets), relative to the manifest's folder"
    )
    index_sha256: str | None = None
    tokens: BuildPath | None = Field(
        None,
        description="token sidecar (tokens per sample key, when the recipe names a tokenizer), "
        "relative to the manifest's folder",
    )
    tokens_sha256: str | None = None


class ReaderFile(Strict):
    """A file written for the ecosystem's readers (the dataset card, the wids index), derived from the
    build; `path` is relative to the manifest's folder."""

    path: BuildPath
    bytes: int
    sha256: str


class Totals(Strict):
    read: int
    kept: int
    rejected: int
    samples: int
    shards: int
    bytes: int


class TokenStats(Strict):
    """Tokens per sample with the recipe's tokenizer: every turn's text plus `image_tokens` per image
    (the chat template's own tokens are not counted). Summaries hold count/mean/min/max/total."""

    tokenizer_sha256: str
    image_tokens: int
    per_sample: dict[str, float]
    per_source: dict[str, dict[str, float]]


class Stats(Strict):
    """Distribution summaries over the samples of the mixture."""

    turns: dict[str, float]
    text_chars: dict[str, float]
    images_per_sample: dict[str, float]
    image_width: dict[str, float]
    image_height: dict[str, float]
    tokens: TokenStats | None = None


class OverlapExample(Strict):
    """One of our samples (its entry's label and original id) found in an eval set (item id), by
    `kind`: `image` (pHash bits apart, `distance`) or `text` (the eval question's n-gram share
    found, `distance` = 1 - share, with the same answer)."""

    sample: str
    eval_item: str
    kind: Literal["image", "text"]
    distance: float


class OverlapReport(Strict):
    """The samples of one source found in one eval set: how many, and the first few."""

    source: str
    eval_set: str
    samples: int
    examples: list[OverlapExample]


class DuplicateReport(Strict):
    """Pairs of samples of two sources (or one) sharing a near-duplicate image (`distance`: pHash
    bits) or being the same sample (same pixels and text): how many pairs, and the first few."""

    kind: Literal["near_duplicate_image", "exact_duplicate_sample"]
    sources: tuple[str, str]
    pairs: int
    examples: list[tuple[str, str, float]]


class Decontamination(Strict):
    """What `decontaminate:` found: eval items read per eval set, overlaps per source × eval set,
    samples dropped (`mode: drop`), duplicates within the mixture."""

    mode: Literal["report", "drop"]
    eval_items: dict[str, int]
    overlaps: list[OverlapReport]
    dropped: int
    duplicates: list[DuplicateReport]


class BuildTimes(Strict):
    """Wall-clock facts of one run (kept out of the content hash). `stages`: seconds per stage;
    `executor`: what ran the jobs (`processes`, `ray`)."""

    started_at: str
    finished_at: str
    seconds: float
    stages: dict[str, float] = {}
    executor: str | None = None


class Manifest(Strict):
    format_version: int = FORMAT_VERSION
    tool_version: str
    name: str
    seed: int
    recipe: dict[str, Any]
    recipe_sha256: str
    limit: int | None = Field(
        None, description="`--limit`: a trial that read at most this many records per source"
    )
    sources: list[SourceReport]
    shards: list[ShardReport]
    totals: Totals
    stats: Stats
    licences: dict[str, str]
    strictest_terms: str
    rejects_file: str = "rejects.jsonl"
    rejects_sha256: str
    reader_files: list[ReaderFile] = []
    decontamination: Decontamination | None = None
    content_sha256: str = ""
    build: BuildTimes | None = None

    def compute_content_sha256(self) -> str:
        """Hash of everything but timestamps, where downloads came from (URLs are locations, like
        `data_root`; the files themselves are pinned as artifacts) and the hash itself."""
        exclude: dict[str, Any] = {name: True for name in (*TIMESTAMP_FIELDS, "content_sha256")}
        if self.format_version >= 2:
            exclude["sources"] = {"__all__": {"downloads"}}
        if self.decontamination is None:  # the hash of a build without it is what it was before
            exclude["decontamination"] = True
        content = self.model_dump(mode="json", exclude=exclude)
        return hashlib.sha256(canonical_json(content)).hexdigest()

    def shard_paths(self, manifest_path: Location) -> list[Location]:
        return [manifest_path.parent / shard.path for shard in self.shards]


class ManifestError(Exception):
    """A file that cannot be read as a dataprep manifest."""


def load_manifest(path: str | Location, *, verified: bool = False) -> Manifest:
    """Read a manifest (a local path, or a store URL: LocationError for an unsupported scheme); with
    `verified`, refuse one whose content no longer matches its hash."""
    try:
        data = location(path).read_bytes()
    except OSError as error:
        raise ManifestError(f"cannot read manifest {path}: {error.strerror or error}") from None
    _refuse_newer_format(path, data)
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<top>"
        raise ManifestError(
            f"{path} is not a dataprep manifest ({error.error_count()} problems; {where}: {first['msg']})"
        ) from None
    if verified and manifest.compute_content_sha256() != manifest.content_sha256:
        raise ManifestError(
            f"{path}: its content_sha256 does not match its content (edited, or not written by a build); "
            "`dataprep manifest validate` checks it"
        )
    return manifest


def _refuse_newer_format(path: str | Location, data: bytes) -> None:
    """A manifest written by a newer dataprep is named as such, not as "not a manifest" (its new
    fields would fail validation) nor read as if its format were this one."""
    try:
        version = json.loads(data).get("format_version")
    except (ValueError, AttributeError, RecursionError):
        return  # not a JSON object (or nested too deep to read): validation names the problem
    if type(version) is int and version > FORMAT_VERSION:
        raise ManifestError(
            f"{path}: manifest format {version} is newer than this dataprep reads (up to {FORMAT_VERSION}); "
            "upgrade dataprep"
        )
