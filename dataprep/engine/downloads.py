"""Put every entry's downloads in place before anything is read: its own `fetch` files, into its
folder, and the files of the upstreams it names, into their conventional folders under the data root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dataprep.contract.manifest import DownloadReport
from dataprep.engine.runner import BuildError, Job, Runner
from dataprep.engine.settings import BuildSettings
from dataprep.fetch import (
    Access,
    ChecksumMismatch,
    Fetched,
    FetchError,
    already_fetched,
    download_key,
    fetch,
    fetched_here,
    target,
    transferred,
)
from dataprep.progress import Transfer
from dataprep.recipe.load import recipe_manifests
from dataprep.recipe.lock import LockedFile, LockError, read_lock
from dataprep.recipe.model import Download, Recipe
from dataprep.recipe.upstreams import Upstream, load_catalogue


@dataclass(frozen=True)
class FetchJob(Job):
    retries: ClassVar[int] = 0  # fetch retries transient failures itself, resuming the partial file
    root: str
    download: Download
    access: Access  # the driver's mirror, hub and token: a worker's environment is not the driver's
    pinned_by: str | None = None  # the lock file that pins it
    revision: str | None = None  # the hub commit its lock names: fetched from there, not from the URL's

    def done(self) -> Fetched | None:
        return already_fetched(Path(self.root), self.download)

    def run(self) -> Fetched:
        try:
            return fetch(Path(self.root), self.download, access=self.access, revision=self.revision)
        except ChecksumMismatch as error:
            if self.pinned_by is None:
                raise
            raise ChecksumMismatch(
                f"{error} (pinned by {self.pinned_by}: the published file changed; delete the lock to accept it)"
            ) from None


def recipe_upstreams(recipe: Recipe) -> list[Upstream]:
    """The upstreams the recipe's entries name, each once, in the order first named."""
    names = list(dict.fromkeys(name for entry in recipe.sources for name in entry.upstreams))
    catalogue = load_catalogue(recipe_manifests(recipe)) if names else {}
    return [catalogue[name] for name in names]


def entry_downloads(recipe: Recipe) -> dict[str, list[tuple[str, Download, str]]]:
    """Per entry label, its downloads as (folder, download, what it belongs to): its `fetch` files into
    its folder (the entry's label), then each named upstream's files into that upstream's folder under
    the data root (the upstream's name). An upstream already in place (every `present` path exists)
    that was not fetched there is taken as placed by hand: nothing of it is downloaded."""
    catalogue = {upstream.name: upstream for upstream in recipe_upstreams(recipe)}
    downloads = {}
    for entry in recipe.sources:
        root = os.path.realpath(recipe.source_root(entry))
        downloads[entry.label] = [(root, download, entry.label) for download in entry.fetch]
        for name in entry.upstreams:
            upstream = catalogue[name]
            folder = os.path.realpath(upstream.root(recipe.root))
            placed_by_hand = not upstream.missing(recipe.root)  # unless this folder fetched it
            downloads[entry.label] += [
                (folder, download, name)
                for download in upstream.downloads()
                if not placed_by_hand or fetched_here(Path(folder), download)
            ]
    return downloads


def fetch_all(
    recipe: Recipe,
    runner: Runner,
    mirror: str | None = None,
    lock: dict[str, LockedFile] | None = None,
    lock_name: str = "",
) -> dict[str, list[DownloadReport]]:
    """Every entry's downloads (completed ones are skipped; when all are, no job runs), in parallel, by
    entry label; the same download into the same folder is fetched once, with the pin any entry (or
    the `lock`) gives it. http(s) and Drive URLs come from `mirror` when given (default:
    `DATAPREP_MIRROR`), hf:// ones from this process's `HF_ENDPOINT` with its hub token: all read here
    and carried by every job, as workers may not have them; read only when a download is not done (a
    build whose downloads are all done imports no HTTP or hub library). Report paths are relative to
    the entry's folder."""
    lock = lock or {}
    specs: dict[tuple[str, str], Download] = {}
    wanted: dict[str, list[tuple[str, str]]] = {}
    part: dict[tuple[str, str], str] = {}  # what the progress lines call each download: its upstream or entry
    for label, downloads in entry_downloads(recipe).items():
        keys = wanted[label] = []
        for root, download, belongs_to in downloads:
            download = _locked(download, lock.get(download.url), lock_name)
            key = (root, download_key(download))
            seen = specs.setdefault(key, download)
            if None not in (seen.sha256, download.sha256) and seen.sha256 != download.sha256:
                raise BuildError(f"{label}: {download.url} is pinned to two different sha256 values")
            if seen.sha256 is None:
                specs[key] = download
            part.setdefault(key, belongs_to)
            keys.append(key)
    _refuse_shared_targets(specs)
    fetched = {key: already_fetched(Path(key[0]), download) for key, download in specs.items()}
    missing = [key for key, found in fetched.items() if found is None]  # checked once, here
    if missing:
        access = Access.here(mirror)
        jobs = [
            (specs[key].url, _fetch_job(key[0], specs[key], access, lock.get(specs[key].url), lock_name))
            for key in missing
        ]
        results = runner.run("fetch", jobs, len(jobs), measure=lambda: _transferred(specs, part))
        fetched.update(zip(missing, results, strict=True))
    done: dict[tuple[str, str], Fetched] = {key: found for key, found in fetched.items() if found is not None}
    reports = {}
    for entry in recipe.sources:
        folder = os.path.realpath(recipe.source_root(entry))
        reports[entry.label] = [
            DownloadReport(
                url=done[key].url,
                path=os.path.relpath(os.path.join(key[0], done[key].path), folder),
                bytes=done[key].bytes,
                sha256=done[key].sha256,
                pinned=done[key].pinned,
                unpacked_files=len(done[key].unpacked),
                revision=done[key].revision,
            )
            for key in wanted[entry.label]
        ]
    return reports


def _transferred(
    specs: dict[tuple[str, str], Download], part: dict[tuple[str, str], str]
) -> dict[str, Transfer]:
    """Per upstream (or entry, for its own `fetch` files): bytes on disk so far, and the whole size
    when every file's is known."""
    moved: dict[str, int] = {}
    wholes: dict[str, int | None] = {}
    for key, download in specs.items():
        name = part[key]
        done, whole = transferred(Path(key[0]), download)
        moved[name] = moved.get(name, 0) + done
        known = wholes.get(name, 0)
        wholes[name] = None if known is None or whole is None else known + whole
    return {name: (moved[name], wholes[name]) for name in moved}


def locked_files(settings: BuildSettings) -> tuple[dict[str, LockedFile], str]:
    """The files of the build's lock (none without one) and the lock's name, for `fetch_all`."""
    if settings.lock is None:
        return {}, ""
    try:
        return read_lock(settings.lock), str(settings.lock)
    except LockError as error:
        raise BuildError(str(error)) from None


def _fetch_job(
    root: str, download: Download, access: Access, locked: LockedFile | None, lock_name: str
) -> FetchJob:
    """A download's job; a locked one names its lock and is fetched from the hub commit the lock records."""
    if locked is None:
        return FetchJob(root, download, access)
    return FetchJob(root, download, access, pinned_by=lock_name, revision=locked.commit)


def _locked(download: Download, locked: LockedFile | None, lock_name: str) -> Download:
    """The download pinned to its lock entry; a recipe pin that the lock contradicts is an error."""
    if locked is None:
        return download
    if download.sha256 not in (None, locked.sha256):
        raise BuildError(
            f"{download.url} is pinned to {download.sha256} by the recipe but to {locked.sha256} by {lock_name}"
        )
    return download.model_copy(update={"sha256": locked.sha256})


def _refuse_shared_targets(specs: dict[tuple[str, str], Download]) -> None:
    """Two URLs downloaded to one file would overwrite each other: a recipe error."""
    targets: dict[tuple[str, str], str] = {}
    for (root, _), download in specs.items():
        if download.unpack:
            continue
        try:
            path = target(download)
        except FetchError as error:
            raise BuildError(str(error)) from None
        first = targets.setdefault((root, path), download.url)
        if first != download.url:
            raise BuildError(f"{first} and {download.url} both download to {Path(root) / path}")
