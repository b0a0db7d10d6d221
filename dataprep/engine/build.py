"""The whole build: fetch, normalize, plan, write or reuse shards, then rejects and the manifest, under
the output folder's lock, timing each stage. Every stage skips work already completed. An output in
a store is built in its local work folder and published from there, the manifest last."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from dataprep.card import write_reader_files
from dataprep.contract.manifest import BuildTimes, Manifest
from dataprep.contract.shards import shard_index_path
from dataprep.contract.store import ObjectPath
from dataprep.engine.decontaminate import decontaminate
from dataprep.engine.downloads import fetch_all, locked_files
from dataprep.engine.entry import Entry, require_inputs, source_roots
from dataprep.engine.make_manifest import make_manifest, token_stats
from dataprep.engine.normalize_all import normalize_all
from dataprep.engine.output import check_output, discard, listed_shards, output_lock
from dataprep.engine.plan import components_of, plan_mixture, shard_copies
from dataprep.engine.publish import Listing, check_store, publish_results, store_shards
from dataprep.engine.runner import Labelled, Runner
from dataprep.engine.session import engine_session
from dataprep.engine.settings import WORK_DIR, BuildSettings
from dataprep.engine.shard_cache import ShardJob, copies_sha256, remove_stale_shards, token_settings
from dataprep.files import write_atomic
from dataprep.mixture import Plan, ShardSlots
from dataprep.recipe.model import Recipe
from dataprep.tokens import TokenSettings


def build(recipe: Recipe, settings: BuildSettings, runner: Runner | None = None) -> Manifest:
    """The whole build, under a lock on the output folder, its jobs on the settings' executor (or on
    `runner`). The
    previous manifest stays until shards start to change; the new one is written last, only after
    every shard is complete (and, for an output in a store, uploaded)."""
    check_output(recipe, settings.out)
    if not any(entry.fetch or entry.upstreams for entry in recipe.sources):
        require_inputs(recipe)  # before Ray starts
    with output_lock(settings.out):
        listing = check_store(settings.store, settings.out) if settings.store else {}
        return _build_locked(recipe, settings, runner, listing)


def _build_locked(
    recipe: Recipe, settings: BuildSettings, runner: Runner | None, listing: Listing
) -> Manifest:
    """The build in its locked output folder; `listing`: the objects of its store (if any) as the
    build started (the shard stage and publishing compare their records with it, not the store)."""
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    out = settings.out
    stages: dict[str, float] = {"engine_start": 0.0}  # the engine's start, in whichever stage needed it
    session = engine_session(settings) if runner is None else contextlib.nullcontext(runner)

    def lap(stage: str) -> None:
        stages["engine_start"] = tasks.start_seconds
        spent = time.monotonic() - clock - sum(stages.values())
        stages[stage] = max(0.0, round(spent, 3))

    with session as tasks:
        downloads = fetch_all(recipe, tasks, settings.mirror, *locked_files(settings))
        lap("fetch")
        entries = normalize_all(recipe, settings, tasks, downloads)
        lap("normalize")
        if recipe.decontaminate:
            decontamination = decontaminate(recipe, settings, tasks, entries)
            lap("decontaminate")
        shard_plan = plan_mixture(components_of(entries), recipe)
        shard_names = [f"{recipe.name}-{index:06d}.tar" for index in range(len(shard_plan))]
        listed = listed_shards(out / "manifest.json")
        if settings.store:
            listed |= store_shards(out, settings.store, listing)
        (out / "manifest.json").unlink(missing_ok=True)  # shards change from here on
        remove_stale_shards(out, set(shard_names), listed, settings.store)
        tokens = token_settings(recipe)
        per_label = [_per_label(slots, entries) for slots in shard_plan]
        jobs = _shard_jobs(out, shard_names, shard_plan, entries, tokens, settings.store, listing)
        markers = tasks.run("write", jobs, len(shard_plan))
        lap("plan_and_write")
    lap("engine_stop")
    rejects = b"".join(reject.to_bytes() for entry in entries for reject in entry.rejects)
    write_atomic(out / "rejects.jsonl", rejects)
    manifest = make_manifest(
        recipe,
        entries,
        shard_names,
        per_label,
        markers,
        token_stats(tokens, entries, markers),
        rejects,
        settings.limit,
    )
    if recipe.decontaminate:
        manifest.decontamination = decontamination
    manifest.reader_files = write_reader_files(out, manifest)  # the dataset card, the wids index
    manifest.content_sha256 = manifest.compute_content_sha256()
    manifest.build = BuildTimes(
        started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - clock, 3),
        stages=stages,
        executor=tasks.executor,
    )
    write_atomic(out / "manifest.json", manifest.model_dump_json(indent=2).encode("utf-8") + b"\n")
    if settings.store:
        publish_results(out, settings.store, manifest, listing)
    if settings.discard_parts:  # the kept samples as normalized; the next build re-normalizes
        discard(out / WORK_DIR / "parts")
    return manifest


def _per_label(slots: ShardSlots, entries: list[Entry]) -> dict[str, int]:
    """A shard's samples per entry label (every entry named, in recipe order)."""
    return {entry.label: count for entry, count in zip(entries, slots.counts, strict=True)}


def _shard_jobs(
    out: Path,
    shard_names: list[str],
    shard_plan: Plan,
    entries: list[Entry],
    tokens: TokenSettings | None,
    store: ObjectPath | None,
    listing: Listing,
) -> Iterator[Labelled]:
    """One job per shard, made only as it is started: the driver holds the copies (and their hash)
    of the shards in flight, not those of every shard. A job's shard objects as `listing` shows them
    let the driver find it done without a request to the store."""
    work = out / WORK_DIR
    roots = source_roots(entries)
    for shard_index, (name, slots) in enumerate(zip(shard_names, shard_plan, strict=True)):
        copies = shard_copies(shard_index, slots, entries)
        marker = work / "shards" / f"{name}.json"
        in_store = (listing.get(f"shards/{name}"), listing.get(f"shards/{shard_index_path(Path(name))}"))
        job = ShardJob(
            out / "shards" / name, marker, copies_sha256(copies), work, copies, tokens, store, in_store, roots
        )
        yield f"shard {name}", job
