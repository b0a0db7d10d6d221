"""Run a recipe on Ray: normalize every source's units, plan the mixture, write shards, then
the manifest. Knows nothing of any one source; every stage skips work already completed."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import gc
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray

from dataprep import __version__
from dataprep.fetch import FetchError, download_key, fetch, target
from dataprep.licences import strictest_terms
from dataprep.manifest import (
    Artifact,
    BuildTimes,
    DownloadReport,
    Manifest,
    ManifestError,
    ShardReport,
    SourceReport,
    Stats,
    TokenStats,
    Totals,
    load_manifest,
)
from dataprep.mixture import Component, Slot, plan, selected_count
from dataprep.normalize import (
    PART_FORMAT,
    UnitSummary,
    index_path,
    inputs_changed,
    inputs_path,
    load_index,
    normalize_unit,
)
from dataprep.paths import not_a_file
from dataprep.progress import Progress
from dataprep.recipe import Download, ImagePolicy, Recipe, SourceEntry, source_options
from dataprep.shard_writer import SampleCopy, ShardResult, ShardStats, Summary, shard_tokens, write_shard
from dataprep.shards import (
    PARTIAL_SUFFIX,
    canonical_json,
    sha256_file,
    shard_index_path,
    tar_locations,
    write_atomic,
    write_shard_index,
)
from dataprep.sources import registry
from dataprep.sources.base import Source
from dataprep.tokens import TokenCounter, TokenSettings, tokenizer_file

WORK_DIR = ".work"


class BuildError(Exception):
    """A stage could not complete; names each distinct error with a unit it failed (and how many
    more). Nothing is published."""


class UnitFailed(Exception):
    """A work unit's error, reduced to its type and message so it crosses process boundaries."""


def _plain_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Re-raise any error of a task as `UnitFailed("<Type>: <message>")`."""

    @functools.wraps(function)
    def wrapper(*args: Any) -> Any:
        try:
            return function(*args)
        except Exception as error:
            raise UnitFailed(f"{type(error).__name__}: {error}") from None

    return wrapper


@dataclass(frozen=True)
class BuildSettings:
    out: Path
    workers: int | None = None
    ray_address: str | None = None
    limit: int | None = None
    progress: bool | None = None
    discard_parts: bool = False

    def __post_init__(self) -> None:  # workers of a joined cluster have their own working directory
        object.__setattr__(self, "out", Path(self.out).absolute())


@dataclass
class EntryResult:
    """A normalized recipe entry: its kept samples (part, member locations) and rejects, in order."""

    entry: SourceEntry
    adapter: type[Source]
    artifacts: list[Artifact]
    kept: list[SampleCopy] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    reencoded: int = 0
    downloads: list[DownloadReport] = field(default_factory=list)

    @property
    def read(self) -> int:
        return len(self.kept) + len(self.rejects)


@contextlib.contextmanager
def ray_session(settings: BuildSettings) -> Iterator[None]:
    """Join RAY_ADDRESS/--ray-address, or start an embedded local cluster for this build."""
    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = settings.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            _ray_init(address=address, logging_level=logging.WARNING)
        except (ValueError, ConnectionError) as error:
            raise BuildError(f"cannot join the Ray cluster at {address!r}: {error}") from None
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        _ray_init(
            address="local",
            num_cpus=settings.workers or os.cpu_count(),
            include_dashboard=False,
            object_store_memory=256 * 1024 * 1024,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupted) if on_main_thread else None
    try:
        yield
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        ray.shutdown()


def _ray_init(**options: Any) -> None:
    """`ray.init`, whose own SIGTERM handler exits with status 15, silently, while it runs: a SIGTERM
    then stops the build as Ctrl-C does."""
    try:
        ray.init(**options)
    except SystemExit as error:
        if error.code != signal.SIGTERM:
            raise
        raise KeyboardInterrupt(f"signal {error.code}") from None


def _interrupted(signum: int, frame: Any) -> None:
    """SIGTERM stops a build as Ctrl-C does (Ray's own handler would exit mid-stage with status 15)."""
    raise KeyboardInterrupt(f"signal {signum}")


@ray.remote(max_retries=0)  # fetch retries transient failures itself, resuming the partial file
@_plain_errors
def _fetch_task(root: str, download: dict[str, Any]) -> dict[str, Any]:
    return dataclasses.asdict(fetch(Path(root), Download.model_validate(download)))


def fetch_sources(recipe: Recipe, settings: BuildSettings) -> list[list[DownloadReport]]:
    """Put every entry's `fetch` downloads in place (completed ones are skipped), in parallel; the
    same download into the same folder is fetched once, with the pin any entry gives it."""
    specs: dict[tuple[str, str], Download] = {}
    wanted: list[list[tuple[str, str]]] = []
    for entry in recipe.sources:
        root = os.path.realpath(recipe.source_root(entry))
        keys = []
        for download in entry.fetch:
            key = (root, download_key(download))
            seen = specs.setdefault(key, download)
            if None not in (seen.sha256, download.sha256) and seen.sha256 != download.sha256:
                raise BuildError(f"{entry.label}: {download.url} is pinned to two different sha256 values")
            if seen.sha256 is None:
                specs[key] = download
            keys.append(key)
        wanted.append(keys)
    _refuse_shared_targets(specs)
    jobs = {key: (download.url, _fetch_job(key[0], download)) for key, download in specs.items()}
    done = dict(zip(jobs, _run("fetch", list(jobs.values()), settings), strict=True))
    return [
        [
            DownloadReport(
                url=done[key]["url"],
                path=done[key]["path"],
                bytes=done[key]["bytes"],
                sha256=done[key]["sha256"],
                pinned=done[key]["pinned"],
                unpacked_files=len(done[key]["unpacked"]),
            )
            for key in keys
        ]
        for keys in wanted
    ]


def _fetch_job(root: str, download: Download) -> Callable[[], ray.ObjectRef]:
    spec = download.model_dump(mode="json")
    return lambda: _fetch_task.remote(root, spec)


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


@ray.remote(max_retries=3)
@_plain_errors
def _normalize_task(
    source: str,
    root: str,
    options: dict[str, Any],
    unit: str,
    entry: str,
    policy: dict[str, Any],
    part: str,
    limit: int | None,
) -> UnitSummary:
    adapter_class = registry()[source]
    adapter = adapter_class(Path(root), adapter_class.Options.model_validate(options))
    return normalize_unit(adapter, unit, entry, ImagePolicy.model_validate(policy), Path(part), limit)


@ray.remote(max_retries=3)
@_plain_errors
def _hash_task(path: str) -> str:
    return sha256_file(Path(path))


@ray.remote(max_retries=3)
@_plain_errors
def _shard_task(
    path: str,
    marker: str,
    plan_sha256: str,
    work_dir: str,
    copies: list[SampleCopy],
    tokens: TokenSettings | None,
) -> dict:
    return _write_or_reuse(Path(path), Path(marker), plan_sha256, Path(work_dir), copies, tokens)


def _write_or_reuse(
    path: Path,
    marker: Path,
    plan_sha256: str,
    work_dir: Path,
    copies: list[SampleCopy],
    tokens: TokenSettings | None,
) -> dict:
    """Write a shard unless one for the same plan is already complete: its marker records the
    plan, the sha256 and the file's size and mtime; a file whose size or mtime differs is re-hashed.
    A kept shard whose token counts were made with other settings is re-counted, not rewritten.
    A marker naming only the plan is written first: a shard cut off before its marker is complete
    is still known as a build's own (stale shards are removed by their markers)."""
    if marker.exists() and path.exists():
        done = json.loads(marker.read_bytes())
        if (
            "sha256" in done
            and done["plan"] == plan_sha256
            and (done.get("stat") == _stat(path) or sha256_file(path) == done["sha256"])
        ):
            kept = {
                **done,
                "stats": ShardStats.from_json(done["stats"]).to_json(),  # earlier markers held Infinity
                "stat": _stat(path),
                "index_sha256": _index_sha256(path, done.get("index_sha256")),
            }
            if done.get("tokens_key") != _tokens_key(tokens):
                kept.update(
                    _tokens_json(tokens, shard_tokens(path, TokenCounter(tokens)) if tokens else None)
                )
            if kept != done:
                write_atomic(marker, canonical_json(kept))
            return kept
    write_atomic(marker, canonical_json({"plan": plan_sha256}))
    result = write_shard(path, work_dir, copies, TokenCounter(tokens) if tokens else None)
    done = {
        "plan": plan_sha256,
        **_result_json(result),
        **_tokens_json(tokens, result.tokens),
        "stat": _stat(path),
    }
    write_atomic(marker, canonical_json(done))
    return done


def _tokens_key(tokens: TokenSettings | None) -> str | None:
    return tokens.key if tokens else None


def _tokens_json(tokens: TokenSettings | None, per_source: dict[str, Summary] | None) -> dict[str, Any]:
    summaries = (
        None if per_source is None else {name: summary.to_json() for name, summary in per_source.items()}
    )
    return {"tokens_key": _tokens_key(tokens), "tokens": summaries}


def _index_sha256(shard: Path, recorded: str | None) -> str:
    """The kept shard's sidecar index, rewritten from its tar headers when missing or altered."""
    index = shard_index_path(shard)
    if recorded and index.exists() and sha256_file(index) == recorded:
        return recorded
    return sha256_file(write_shard_index(shard, tar_locations(shard)))


def _stat(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns]


def _result_json(result: ShardResult) -> dict[str, Any]:
    return {
        "sha256": result.sha256,
        "bytes": result.bytes,
        "samples": result.samples,
        "stats": result.stats.to_json(),
        "index_sha256": result.index_sha256,
    }


def _run(
    stage: str, jobs: list[tuple[str, Callable[[], ray.ObjectRef]]], settings: BuildSettings
) -> list[Any]:
    """Run jobs with at most `workers` in flight; results in job order; raise on any failure."""
    results: list[Any] = [None] * len(jobs)
    errors: list[tuple[str, str]] = []  # (job, its error)
    limit = settings.workers or len(jobs) or 1
    progress = Progress(stage, len(jobs), enabled=settings.progress)
    try:
        _drain(jobs, limit, results, errors, progress)
    finally:
        progress.close()  # a line of its own, also when interrupted
    if errors:
        raise BuildError(f"{stage} failed for {len(errors)} of {len(jobs)} units:\n" + _failures(errors))
    return results


def _failures(errors: list[tuple[str, str]]) -> str:
    """One line per distinct error, naming its first unit: a full disk fails every unit alike."""
    by_error: dict[str, list[str]] = {}
    for job, error in errors:
        by_error.setdefault(error, []).append(job)
    return "\n".join(
        f"{jobs[0]}: {error}" + (f" (and {len(jobs) - 1} more units)" if len(jobs) > 1 else "")
        for error, jobs in by_error.items()
    )


def _drain(
    jobs: list[tuple[str, Callable[[], ray.ObjectRef]]],
    limit: int,
    results: list[Any],
    errors: list[tuple[str, str]],
    progress: Progress,
) -> None:
    """Submit the jobs with at most `limit` in flight; fill in results and errors in job order."""
    pending: dict[ray.ObjectRef, int] = {}
    queue = iter(range(len(jobs)))
    for index in queue:
        pending[jobs[index][1]()] = index
        if len(pending) >= limit:
            break
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(ready[0])
        try:
            results[index] = ray.get(ready[0])
        except ray.exceptions.RayTaskError as error:
            errors.append(
                (jobs[index][0], str(error.cause if isinstance(error.cause, UnitFailed) else error))
            )
        except ray.exceptions.RayError as error:
            errors.append((jobs[index][0], str(error)))
        progress.advance(_records(results[index]))
        next_index = next(queue, None)
        if next_index is not None:
            pending[jobs[next_index][1]()] = next_index


def _units(entry: SourceEntry, adapter: Source) -> list[str]:
    """The adapter's work units; a file it cannot even list them from is a build error naming it."""
    try:
        return list(adapter.units())
    except Exception as error:  # an adapter's own exception: reported, not a traceback
        raise BuildError(
            f"{entry.label}: cannot list its work units: {type(error).__name__}: {error}"
        ) from None


def _records(result: Any) -> int:
    """Records a finished job accounts for: read by a normalize job, written by a shard job."""
    if isinstance(result, UnitSummary):
        return result.read
    return result.get("samples", 0) if isinstance(result, dict) else 0


def _adapter(recipe: Recipe, entry: SourceEntry) -> Source:
    adapter_class = registry()[entry.source]
    return adapter_class(recipe.source_root(entry), source_options(entry))


def _artifacts(adapters: list[Source], work: Path, settings: BuildSettings) -> list[list[Artifact]]:
    """sha256 of every input file, cached by (path, size, mtime) so unchanged files hash once."""
    cache_path = work / "artifact_hashes.json"
    cache = json.loads(cache_path.read_bytes()) if cache_path.exists() else {}
    files = sorted({str(path) for adapter in adapters for path in adapter.inputs()})
    stats = {name: os.stat(name) for name in files}
    stale = [
        name
        for name in files
        if cache.get(name, [None])[:2] != [stats[name].st_size, stats[name].st_mtime_ns]
    ]
    jobs = [(name, lambda name=name: _hash_task.remote(name)) for name in stale]
    for name, digest in zip(stale, _run("hash", jobs, settings), strict=True):
        cache[name] = [stats[name].st_size, stats[name].st_mtime_ns, digest]
    write_atomic(cache_path, canonical_json(cache))
    return [
        [
            Artifact(
                path=os.path.relpath(path, adapter.root),
                bytes=cache[str(path)][0],
                sha256=cache[str(path)][2],
            )
            for path in sorted(adapter.inputs())
        ]
        for adapter in adapters
    ]


def _entry_key(adapter: Source, recipe: Recipe, limit: int | None) -> str:
    """Normalized parts are reused while adapter, options, inputs, image policy and limit are unchanged."""
    inputs = [
        [str(path), os.stat(path).st_size, os.stat(path).st_mtime_ns] for path in sorted(adapter.inputs())
    ]
    identity = {
        "part_format": PART_FORMAT,
        "adapter": [adapter.name, adapter.version],
        "options": adapter.options.model_dump(mode="json"),
        "root": str(adapter.root),
        "inputs": inputs,
        "image": recipe.image.model_dump(mode="json"),
        "limit": limit,
    }
    return hashlib.sha256(canonical_json(identity)).hexdigest()[:16]


def missing_inputs(recipe: Recipe) -> list[str]:
    """Every required upstream file that is absent, as `<source name>: <what>`."""
    return [
        f"{entry.label}: {item}" for entry in recipe.sources for item in _adapter(recipe, entry).missing()
    ]


def require_inputs(recipe: Recipe) -> None:
    """Every input is there and is a file: hashing a named pipe or a device would wait or read forever."""
    missing = missing_inputs(recipe)
    if missing:
        raise BuildError("required inputs are missing:\n" + "\n".join(missing))
    unusable = [
        f"{entry.label}: {path} {problem}"
        for entry in recipe.sources
        for path in _adapter(recipe, entry).inputs()
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


def _refuse_repeated_inputs(recipe: Recipe, adapters: list[Source]) -> None:
    """A file an entry's options name twice (`files: [a, ./a]`, `shards: [0, 0]`) would be read,
    and its samples kept, twice: a build error (`repeat` is how to oversample)."""
    for entry, adapter in zip(recipe.sources, adapters, strict=True):
        seen: set[str] = set()
        for path in adapter.inputs():
            real = os.path.realpath(path)
            if real in seen:
                raise BuildError(
                    f"{entry.label}: its options name {path} twice; name each input once "
                    "(`repeat` oversamples a source)"
                )
            seen.add(real)


def components_of(entries: list[EntryResult]) -> list[Component]:
    return [
        Component(result.entry.label, len(result.kept), result.entry.take, result.entry.repeat)
        for result in entries
    ]


def plan_mixture(components: list[Component], recipe: Recipe) -> list[list[Slot]]:
    """The recipe's shard plan; a mixture too large to plan in memory is a build error."""
    try:
        with _gc_paused():  # 1.27 M slots: 2.4x faster
            return plan(components, recipe.output.shard_size, recipe.seed)
    except MemoryError:
        total = sum(selected_count(component) * component.repeat for component in components)
        raise BuildError(
            f"a mixture of {total:,} samples does not fit in memory: check `take` and `repeat`"
        ) from None


def normalize(recipe: Recipe, settings: BuildSettings) -> list[EntryResult]:
    """Normalize every entry's units (reusing completed parts) and gather kept samples and rejects.
    With a limit, units are read in order, a further one only while the entry is short of it."""
    work = settings.out / WORK_DIR
    adapters = [_adapter(recipe, entry) for entry in recipe.sources]
    require_inputs(recipe)
    _refuse_repeated_inputs(recipe, adapters)
    artifacts = _artifacts(adapters, work, settings)
    units = [_units(entry, adapter) for entry, adapter in zip(recipe.sources, adapters, strict=True)]
    folders = [
        work / "parts" / f"{entry.label}-{_entry_key(adapter, recipe, settings.limit)}"
        for entry, adapter in zip(recipe.sources, adapters, strict=True)
    ]
    parts = [
        [folder / f"{i:06d}.tar" for i in range(len(entry_units))]
        for folder, entry_units in zip(folders, units, strict=True)
    ]
    counts: dict[Path, int] = {}  # records in each completed part, read only under a limit
    used = [0] * len(adapters)  # units taken, in order, per entry

    def short(e: int) -> bool:
        limit = settings.limit
        return limit is None or sum(counts.get(p, 0) for p in parts[e][: used[e]]) < limit

    while True:
        jobs, running = [], []
        for e, (entry, adapter) in enumerate(zip(recipe.sources, adapters, strict=True)):
            while used[e] < len(units[e]) and short(e):
                unit, part = units[e][used[e]], parts[e][used[e]]
                used[e] += 1
                if _complete(part) and not inputs_changed(part):
                    if settings.limit is not None:
                        counts[part] = len(load_index(part)["records"])
                    continue
                index_path(part).unlink(missing_ok=True)  # the index is the completion marker
                label = f"{entry.label} unit {unit!r}"
                jobs.append((label, _normalize_job(entry, adapter, unit, recipe, part, settings)))
                running.append(part)
                if settings.limit is not None:
                    break  # with a limit, read the next unit only if this one falls short
        if not jobs:
            break
        _run("normalize", jobs, settings)
        if settings.limit is not None:
            counts.update((part, len(load_index(part)["records"])) for part in running)
    with _gc_paused():
        return [
            _gather(entry, adapter, entry_parts[:taken], entry_artifacts, work, settings.limit)
            for entry, adapter, entry_parts, taken, entry_artifacts in zip(
                recipe.sources, adapters, parts, used, artifacts, strict=True
            )
        ]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the driver makes millions of small acyclic
    objects (every kept sample's locations, the plan's slots): its repeated passes over them took
    more than half of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _complete(part: Path) -> bool:
    """A part whose tar, inputs and index (written last) are all there."""
    return index_path(part).exists() and part.exists() and inputs_path(part).exists()


def _discard(folder: Path) -> None:
    """Delete a folder so that a kill half-way leaves it whole or gone: renamed first, then removed."""
    doomed = folder.with_name(f"{folder.name}.discarded")
    shutil.rmtree(doomed, ignore_errors=True)  # one a killed run left
    if folder.exists():
        folder.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _normalize_job(
    entry: SourceEntry, adapter: Source, unit: str, recipe: Recipe, part: Path, settings: BuildSettings
) -> Callable[[], ray.ObjectRef]:
    args = (
        entry.source,
        str(adapter.root),
        adapter.options.model_dump(mode="json"),
        unit,
        entry.label,
        recipe.image.model_dump(mode="json"),
        str(part),
        settings.limit,
    )
    return lambda: _normalize_task.remote(*args)


def _gather(
    entry: SourceEntry,
    adapter: Source,
    parts: list[Path],
    artifacts: list[Artifact],
    work: Path,
    limit: int | None,
) -> EntryResult:
    result = EntryResult(entry, type(adapter), artifacts)
    budget = limit if limit is not None else float("inf")
    for part in parts:
        index = load_index(part)  # one at a time: all of them at once would double the driver's peak
        relative = str(part.relative_to(work))
        for record in index["records"]:
            if result.read >= budget:
                return result
            if "members" in record:
                members = tuple(
                    (sys.intern(suffix), offset, size) for suffix, offset, size in record["members"]
                )
                result.kept.append(SampleCopy("", relative, members, record["digest"]))
                result.reencoded += record.get("reencoded", 0)
            else:
                reject = {"source": entry.label, "id": record["id"], "reason": record["reason"]}
                result.rejects.append({**reject, "detail": record["detail"], "unit": index["unit"]})
    return result


def build(recipe: Recipe, settings: BuildSettings) -> Manifest:
    """The whole build, under a lock on the output folder. The previous manifest stays until shards
    start to change; the new one is written last, only after every shard is complete."""
    check_output(recipe, settings.out)
    if not any(entry.fetch for entry in recipe.sources):
        require_inputs(recipe)  # before Ray starts
    with output_lock(settings.out):
        return _build_locked(recipe, settings)


def _build_locked(recipe: Recipe, settings: BuildSettings) -> Manifest:
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    out = settings.out
    work = out / WORK_DIR
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        stages[stage] = max(0.0, round(time.monotonic() - clock - sum(stages.values()), 3))

    with ray_session(settings):
        lap("ray_start")
        downloads = fetch_sources(recipe, settings)
        lap("fetch")
        entries = normalize(recipe, settings)
        for result, fetched in zip(entries, downloads, strict=True):
            result.downloads = fetched
        lap("normalize")
        components = components_of(entries)
        shard_plan = plan_mixture(components, recipe)
        shard_names = [f"{recipe.name}-{index:06d}.tar" for index in range(len(shard_plan))]
        listed = _listed_shards(out / "manifest.json")
        (out / "manifest.json").unlink(missing_ok=True)  # shards change from here on
        _remove_stale_shards(out, set(shard_names), listed)
        token_settings = _token_settings(recipe)
        jobs = []
        per_source = []
        for shard_index, (name, slots) in enumerate(zip(shard_names, shard_plan, strict=True)):
            counts = Counter(components[slot.component].name for slot in slots)
            per_source.append({component.name: counts[component.name] for component in components})
            job = _shard_job(out / "shards" / name, work, shard_index, slots, entries, token_settings)
            jobs.append((f"shard {name}", job))
        written = _run("write", jobs, settings)
        lap("plan_and_write")
    rejects = b"".join(canonical_json(reject) + b"\n" for result in entries for reject in result.rejects)
    write_atomic(out / "rejects.jsonl", rejects)
    tokens = _token_stats(token_settings, components, written)
    manifest = _manifest(
        recipe, entries, components, shard_names, per_source, written, tokens, rejects, settings.limit
    )
    manifest.build = BuildTimes(
        started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - clock, 3),
        stages=stages,
    )
    write_atomic(out / "manifest.json", manifest.model_dump_json(indent=2).encode("utf-8") + b"\n")
    if settings.discard_parts:  # a copy of every kept sample; the next build re-normalizes
        _discard(work / "parts")
    return manifest


def _shard_job(
    path: Path,
    work: Path,
    shard_index: int,
    slots: list[Slot],
    entries: list[EntryResult],
    tokens: TokenSettings | None,
) -> Callable[[], ray.ObjectRef]:
    """Submits one shard's task; its copies and plan hash are made only then, so the driver holds
    those of the shards in flight, not those of every shard."""

    def submit() -> ray.ObjectRef:
        copies = shard_copies(shard_index, slots, entries)
        marker = work / "shards" / f"{path.name}.json"
        return _shard_task.remote(str(path), str(marker), plan_sha256(copies), str(work), copies, tokens)

    return submit


def shard_copies(shard_index: int, slots: list[Slot], entries: list[EntryResult]) -> list[SampleCopy]:
    """The shard's samples, in order, each keyed `<shard>_<position>`."""
    copies = []
    for position, slot in enumerate(slots):
        kept = entries[slot.component].kept[slot.index]
        copies.append(SampleCopy(f"{shard_index:06d}_{position:06d}", kept.part, kept.members, kept.digest))
    return copies


def plan_sha256(copies: list[SampleCopy]) -> str:
    """The hash a shard's marker records: every copy's fields, in order (as `dataclasses.asdict`
    gives them, without its per-value deep copies: 7× faster)."""
    rows = [{"key": c.key, "part": c.part, "members": c.members, "digest": c.digest} for c in copies]
    return hashlib.sha256(canonical_json(rows)).hexdigest()


def _token_settings(recipe: Recipe) -> TokenSettings | None:
    if recipe.tokens is None:
        return None
    file = tokenizer_file(Path(recipe.tokens.tokenizer)).absolute()
    return TokenSettings(str(file), sha256_file(file), recipe.tokens.image_tokens)


def _token_stats(
    settings: TokenSettings | None, components: list[Component], written: list[dict[str, Any]]
) -> TokenStats | None:
    """Per source and over the whole mixture, merged from every shard's tally."""
    if settings is None:
        return None
    per_source = {component.name: Summary() for component in components}
    for done in written:
        for name, values in done["tokens"].items():
            per_source[name].merge(Summary(**values))
    overall = Summary()
    for summary in per_source.values():
        overall.merge(summary)
    return TokenStats(
        tokenizer_sha256=settings.sha256,
        image_tokens=settings.image_tokens,
        per_sample=overall.report(with_total=True),
        per_source={name: summary.report(with_total=True) for name, summary in per_source.items()},
    )


def _listed_shards(manifest: Path) -> set[str]:
    """The shard file names an earlier build's manifest lists (none when there is no such manifest)."""
    try:
        return {Path(shard.path).name for shard in load_manifest(manifest).shards}
    except ManifestError:
        return set()


def _remove_stale_shards(out: Path, keep: set[str], listed: set[str]) -> None:
    """Drop the shards earlier builds wrote (those with a marker, or in their manifest: any recipe
    name) that the current plan does not keep, with their indexes, and unfinished `.partial` files.
    Nothing else: a file a build did not write stays (`manifest validate` names it)."""
    folder, markers = out / "shards", out / WORK_DIR / "shards"
    written = set(listed)
    if markers.exists():
        for marker in markers.glob("*.tar.json"):
            written.add(marker.name.removesuffix(".json"))
            if marker.name.removesuffix(".json") not in keep:
                marker.unlink()
    for shard in written - keep:
        (folder / shard).unlink(missing_ok=True)
        shard_index_path(folder / shard).unlink(missing_ok=True)
    if folder.exists():
        for path in folder.iterdir():
            if path.name.endswith((".tar" + PARTIAL_SUFFIX, ".idx.json" + PARTIAL_SUFFIX)):
                path.unlink()


def check_output(recipe: Recipe, out: Path) -> None:
    """Refuse an output folder a build could damage: a file, a folder holding something other than
    an earlier dataprep build (its `.work/` or manifest), or one inside a source's folder."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"output {out} is not a folder")
    if out.is_dir() and any(out.iterdir()) and not _holds_a_build(out):
        raise BuildError(
            f"output {out} is not empty and holds no dataprep build (no {WORK_DIR}/ or manifest.json): "
            "choose a new or empty folder"
        )
    resolved = out.resolve()
    for entry in recipe.sources:
        root = recipe.source_root(entry).resolve()
        if resolved == root or root in resolved.parents:
            raise BuildError(f"output {out} is inside the folder of source {entry.label} ({root})")


def _holds_a_build(out: Path) -> bool:
    """An earlier build's work folder, or its manifest (its `.work/` may have been deleted)."""
    if (out / WORK_DIR).is_dir():
        return True
    try:
        load_manifest(out / "manifest.json")
    except ManifestError:
        return False
    return True


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output folder for the whole build."""
    lock_file = out / WORK_DIR / "lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildError(f"another build is writing to {out}") from None
        yield


def _manifest(
    recipe: Recipe,
    entries: list[EntryResult],
    components: list[Component],
    shard_names: list[str],
    per_source: list[dict[str, int]],
    written: list[dict[str, Any]],
    tokens: TokenStats | None,
    rejects: bytes,
    limit: int | None,
) -> Manifest:
    in_mixture = {
        component.name: sum(counts[component.name] for counts in per_source) for component in components
    }
    total = sum(in_mixture.values())
    stats = ShardStats()
    for done in written:
        stats.merge(ShardStats.from_json(done["stats"]))
    sources = [
        SourceReport(
            name=result.entry.label,
            source=result.entry.source,
            adapter_version=result.adapter.version,
            licence=result.adapter.licence,
            path=result.entry.path,
            take=result.entry.take,
            repeat=result.entry.repeat,
            read=result.read,
            kept=len(result.kept),
            rejected=dict(sorted(Counter(reject["reason"] for reject in result.rejects).items())),
            reencoded_images=result.reencoded,
            in_mixture=in_mixture[component.name],
            expected=result.entry.expect,
            share=round(in_mixture[component.name] / total, 6) if total else 0.0,
            artifacts=result.artifacts,
            downloads=result.downloads,
        )
        for result, component in zip(entries, components, strict=True)
    ]
    shards = [
        ShardReport(
            path=f"shards/{name}",
            samples=done["samples"],
            bytes=done["bytes"],
            sha256=done["sha256"],
            per_source=counts,
            index=f"shards/{shard_index_path(Path(name)).name}",
            index_sha256=done["index_sha256"],
        )
        for name, done, counts in zip(shard_names, written, per_source, strict=True)
    ]
    licences = {source.name: source.licence for source in sources}
    manifest = Manifest(
        tool_version=__version__,
        name=recipe.name,
        seed=recipe.seed,
        recipe=recipe.content(),
        recipe_sha256=recipe.sha256(),
        limit=limit,
        sources=sources,
        shards=shards,
        totals=Totals(
            read=sum(source.read for source in sources),
            kept=sum(source.kept for source in sources),
            rejected=sum(len(result.rejects) for result in entries),
            samples=total,
            shards=len(shards),
            bytes=sum(shard.bytes for shard in shards),
        ),
        stats=Stats(
            **{name: getattr(stats, name).report() for name in ShardStats.__dataclass_fields__}, tokens=tokens
        ),
        licences=licences,
        strictest_terms=strictest_terms(
            [source.licence for source in sources if source.in_mixture] or list(licences.values())
        ),
        rejects_sha256=hashlib.sha256(rejects).hexdigest(),
    )
    manifest.content_sha256 = manifest.compute_content_sha256()
    return manifest
