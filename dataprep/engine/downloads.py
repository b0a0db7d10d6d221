"""Put every entry's `fetch` downloads in place before anything is read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dataprep.contract.manifest import DownloadReport
from dataprep.engine.runner import BuildError, Job, Runner
from dataprep.fetch import Fetched, FetchError, download_key, fetch, mirror_of, target
from dataprep.recipe.model import Download, Recipe


@dataclass(frozen=True)
class FetchJob(Job):
    retries: ClassVar[int] = 0  # fetch retries transient failures itself, resuming the partial file
    root: str
    download: Download
    mirror: str | None = None

    def run(self) -> Fetched:
        return fetch(Path(self.root), self.download, mirror=self.mirror)


def fetch_all(recipe: Recipe, runner: Runner, mirror: str | None = None) -> dict[str, list[DownloadReport]]:
    """Every entry's downloads (completed ones are skipped), in parallel, by entry label; the same
    download into the same folder is fetched once, with the pin any entry gives it. http(s) URLs come
    from `mirror` when given (default: `DATAPREP_MIRROR`, read here: workers may not have it)."""
    mirror = mirror_of(mirror)
    specs: dict[tuple[str, str], Download] = {}
    wanted: dict[str, list[tuple[str, str]]] = {}
    for entry in recipe.sources:
        root = os.path.realpath(recipe.source_root(entry))
        keys = wanted[entry.label] = []
        for download in entry.fetch:
            key = (root, download_key(download))
            seen = specs.setdefault(key, download)
            if None not in (seen.sha256, download.sha256) and seen.sha256 != download.sha256:
                raise BuildError(f"{entry.label}: {download.url} is pinned to two different sha256 values")
            if seen.sha256 is None:
                specs[key] = download
            keys.append(key)
    _refuse_shared_targets(specs)
    jobs = [(download.url, FetchJob(root, download, mirror)) for (root, _), download in specs.items()]
    done: dict[tuple[str, str], Fetched] = dict(zip(specs, runner.run("fetch", jobs, len(jobs)), strict=True))
    return {
        label: [
            DownloadReport(
                url=done[key].url,
                path=done[key].path,
                bytes=done[key].bytes,
                sha256=done[key].sha256,
                pinned=done[key].pinned,
                unpacked_files=len(done[key].unpacked),
            )
            for key in keys
        ]
        for label, keys in wanted.items()
    }


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
