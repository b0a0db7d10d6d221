"""One recipe entry through the build: its adapter, input files (checked, hashed once per change),
work units and part folder, its downloads, then the samples gathered from its parts."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dataprep.contract.manifest import Artifact, DownloadReport
from dataprep.contract.rejects import RejectLine
from dataprep.engine.kept import KeptSamples
from dataprep.engine.runner import BuildError, Job, Runner
from dataprep.engine.settings import WORK_DIR, BuildSettings
from dataprep.files import FileStamp, canonical_json, sha256_file, write_atomic
from dataprep.images import RESAMPLER
from dataprep.normalize import PART_FORMAT
from dataprep.part_members import real_roots
from dataprep.paths import not_a_file
from dataprep.recipe.load import source_options
from dataprep.recipe.model import Recipe, SourceEntry
from dataprep.sources import registry
from dataprep.sources.base import Source


@dataclass
class Entry:
    """A recipe entry (`label` is its unique name) with what the build learns of it, stage by stage."""

    entry: SourceEntry
    adapter: Source
    downloads: list[DownloadReport] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    parts: list[Path] = field(default_factory=list)  # one per unit, in its part folder
    used: int = 0  # units handed to normalize, in order (fewer than all under a limit)
    kept: KeptSamples = field(default_factory=KeptSamples)  # their parts, member locations, digests
    rejects: list[RejectLine] = field(default_factory=list)
    reencoded: int = 0

    @property
    def label(self) -> str:
        return self.entry.label

    @property
    def read(self) -> int:
        return len(self.kept) + len(self.rejects)


def source_roots(entries: Iterable[Entry]) -> tuple[str, ...]:
    """The real roots the entries' sources declare: the only ones a part's image reference may name."""
    return real_roots(root for entry in entries for root in entry.adapter.roots())


def adapter_of(recipe: Recipe, entry: SourceEntry) -> Source:
    adapter_class = registry()[entry.source]
    return adapter_class(recipe.source_root(entry), source_options(entry))


def missing_inputs(recipe: Recipe) -> list[str]:
    """Every required upstream file that is absent, as `<entry label>: <what>`."""
    return [
        f"{entry.label}: {item}" for entry in recipe.sources for item in adapter_of(recipe, entry).missing()
    ]


def require_inputs(recipe: Recipe) -> None:
    """Every input is there and is a file: hashing a named pipe or a device would wait or read forever."""
    missing = missing_inputs(recipe)
    if missing:
        raise BuildError("required inputs are missing:\n" + "\n".join(missing))
    unusable = [
        f"{entry.label}: {path} {problem}"
        for entry in recipe.sources
        for path in adapter_of(recipe, entry).inputs()
        if (problem := _not_a_file(path))
    ]
    if unusable:
        raise BuildError("required inputs are not files:\n" + "\n".join(unusable))


def _not_a_file(path: Path) -> str | None:
    """Why an input cannot be read as a file (a folder, a pipe, a device, a link to nothing), or None."""
    try:
        return not_a_file(os.stat(path).st_mode)
    except OSError as error:
        return f"cannot be opened: {error.strerror}"


def refuse_repeated_inputs(entry: Entry) -> None:
    """A file an entry's options name twice (`files: [a, ./a]`, `shards: [0, 0]`) would be read,
    and its samples kept, twice: a build error (`repeat` is how to oversample)."""
    seen: set[str] = set()
    for path in entry.adapter.inputs():
        real = os.path.realpath(path)
        if real in seen:
            raise BuildError(
                f"{entry.label}: its options name {path} twice; name each input once "
                "(`repeat` oversamples a source)"
            )
        seen.add(real)


@dataclass(frozen=True)
class HashJob(Job):
    path: str

    def run(self) -> str:
        return sha256_file(Path(self.path))


def hash_inputs(entries: list[Entry], work: Path, runner: Runner) -> None:
    """Set every entry's artifacts: the sha256 of each input file, cached by (path, size, mtime) so
    unchanged files hash once."""
    cache_path = work / "artifact_hashes.json"
    cache = json.loads(cache_path.read_bytes()) if cache_path.exists() else {}
    files = sorted({str(path) for entry in entries for path in entry.adapter.inputs()})
    stamps = {name: FileStamp.read(name).to_json() for name in files}
    stale = [name for name in files if cache.get(name, [None])[:2] != stamps[name]]
    digests = runner.run("hash", ((name, HashJob(name)) for name in stale), len(stale))
    for name, digest in zip(stale, digests, strict=True):
        cache[name] = [*stamps[name], digest]
    write_atomic(cache_path, canonical_json(cache))
    for entry in entries:
        entry.artifacts = [
            Artifact(
                path=os.path.relpath(path, entry.adapter.root),
                bytes=cache[str(path)][0],
                sha256=cache[str(path)][2],
            )
            for path in sorted(entry.adapter.inputs())
        ]


def list_units(entry: Entry) -> list[str]:
    """The adapter's work units; a file it cannot even list them from is a build error naming it."""
    try:
        return list(entry.adapter.units())
    except Exception as error:  # an adapter's own exception: reported, not a traceback
        raise BuildError(
            f"{entry.label}: cannot list its work units: {type(error).__name__}: {error}"
        ) from None


def entry_key(adapter: Source, recipe: Recipe, limit: int | None) -> str:
    """Normalized parts are reused while adapter, options, inputs, image policy and resampler, limit
    and whether images are fingerprinted are unchanged."""
    inputs = [[str(path), *FileStamp.read(path).to_json()] for path in sorted(adapter.inputs())]
    identity = {
        "part_format": PART_FORMAT,
        "adapter": [adapter.name, adapter.version],
        "options": adapter.options.model_dump(mode="json"),
        "root": str(adapter.root),
        "inputs": inputs,
        "image": recipe.image.model_dump(mode="json"),
        "resampler": RESAMPLER,
        "limit": limit,
    }
    if recipe.decontaminate:  # parts with fingerprints in their samples' meta
        identity["fingerprints"] = True
    return hashlib.sha256(canonical_json(identity)).hexdigest()[:16]


def prepare_entries(
    recipe: Recipe,
    settings: BuildSettings,
    runner: Runner,
    downloads: dict[str, list[DownloadReport]] | None = None,
) -> list[Entry]:
    """Every entry with its downloads, its inputs checked and hashed, its units listed and its part
    paths named."""
    downloads = downloads or {}
    work = settings.out / WORK_DIR
    entries = [
        Entry(entry, adapter_of(recipe, entry), downloads=downloads.get(entry.label, []))
        for entry in recipe.sources
    ]
    require_inputs(recipe)
    for entry in entries:
        refuse_repeated_inputs(entry)
    hash_inputs(entries, work, runner)
    for entry in entries:
        entry.units = list_units(entry)
    for entry in entries:
        folder = work / "parts" / f"{entry.label}-{entry_key(entry.adapter, recipe, settings.limit)}"
        entry.parts = [folder / f"{i:06d}.tar" for i in range(len(entry.units))]
    return entries
