"""Normalize every entry's units into parts (completed parts are reused), then gather each entry's
kept samples and rejects. With a limit, units are read in order, a further one only while the entry is
short of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataprep.contract.manifest import DownloadReport
from dataprep.contract.rejects import RejectLine
from dataprep.engine.entry import Entry, prepare_entries
from dataprep.engine.kept import PartSamples
from dataprep.engine.runner import Job, Labelled, Runner
from dataprep.engine.settings import WORK_DIR, BuildSettings
from dataprep.normalize import (
    UnitSummary,
    index_path,
    inputs_changed,
    inputs_path,
    load_index,
    normalize_unit,
)
from dataprep.recipe.model import ImagePolicy, Recipe
from dataprep.sample import Reject
from dataprep.sources import registry


@dataclass(frozen=True)
class NormalizeJob(Job):
    """One work unit of an entry into its part file (and index)."""

    adapter: str  # its registry name
    root: Path
    options: dict[str, Any]  # the adapter's options, as JSON
    unit: str
    label: str
    policy: dict[str, Any]  # the recipe's image policy, as JSON
    part: Path
    limit: int | None
    fingerprints: bool = False

    def run(self) -> UnitSummary:
        adapter_class = registry()[self.adapter]
        adapter = adapter_class(self.root, adapter_class.Options.model_validate(self.options))
        policy = ImagePolicy.model_validate(self.policy)
        return normalize_unit(
            adapter, self.unit, self.label, policy, self.part, self.limit, self.fingerprints
        )

    def records(self, result: UnitSummary) -> int:
        return result.read


def normalize_all(
    recipe: Recipe,
    settings: BuildSettings,
    runner: Runner,
    downloads: dict[str, list[DownloadReport]] | None = None,
) -> list[Entry]:
    """Every entry, normalized, with its kept samples and rejects gathered in order."""
    entries = prepare_entries(recipe, settings, runner, downloads)
    counts: dict[Path, int] = {}  # records in each completed part, read only under a limit

    def short(entry: Entry) -> bool:
        limit = settings.limit
        return limit is None or sum(counts.get(part, 0) for part in entry.parts[: entry.used]) < limit

    while True:
        jobs: list[Labelled] = []
        running: list[Path] = []
        for entry in entries:
            while entry.used < len(entry.units) and short(entry):
                unit, part = entry.units[entry.used], entry.parts[entry.used]
                entry.used += 1
                if _complete(part) and not inputs_changed(part):
                    if settings.limit is not None:
                        counts[part] = len(load_index(part)["records"])
                    continue
                index_path(part).unlink(missing_ok=True)  # the index is the completion marker
                jobs.append(
                    (f"{entry.label} unit {unit!r}", _normalize_job(entry, unit, part, recipe, settings))
                )
                running.append(part)
                if settings.limit is not None:
                    break  # with a limit, read the next unit only if this one falls short
        if not jobs:
            break
        runner.run("normalize", jobs, len(jobs))
        if settings.limit is not None:
            counts.update((part, len(load_index(part)["records"])) for part in running)
    for entry in entries:
        gather(entry, settings.out / WORK_DIR, settings.limit)
    return entries


def _normalize_job(
    entry: Entry, unit: str, part: Path, recipe: Recipe, settings: BuildSettings
) -> NormalizeJob:
    return NormalizeJob(
        adapter=entry.entry.source,
        root=entry.adapter.root,
        options=entry.adapter.options.model_dump(mode="json"),
        unit=unit,
        label=entry.label,
        policy=recipe.image.model_dump(mode="json"),
        part=part,
        limit=settings.limit,
        fingerprints=recipe.decontaminate is not None,
    )


def _complete(part: Path) -> bool:
    """A part whose tar, inputs and index (written last) are all there."""
    return index_path(part).exists() and part.exists() and inputs_path(part).exists()


def gather(entry: Entry, work: Path, limit: int | None) -> None:
    """The entry's kept samples (part, member locations) and rejects, read from the parts of the
    units it used, up to `limit` records."""
    for part in entry.parts[: entry.used]:
        if limit is not None and entry.read >= limit:
            return
        index = load_index(part)  # one at a time: all of them at once would double the driver's peak
        records = index["records"] if limit is None else index["records"][: limit - entry.read]
        kept = [record for record in records if "members" in record]
        samples = ((record["digest"], record["members"]) for record in kept)
        entry.kept.append(PartSamples.of(str(part.relative_to(work)), samples))
        entry.reencoded += sum(record.get("reencoded", 0) for record in kept)
        for record in records:
            if "members" not in record:
                reject = Reject.from_json(record)
                entry.rejects.append(
                    RejectLine(entry.label, reject.id, reject.reason, reject.detail, index["unit"])
                )
