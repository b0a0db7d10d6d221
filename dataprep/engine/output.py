"""The output folder: refused when a build could damage it, locked while one runs, parts discarded."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Iterator
from pathlib import Path

from dataprep.contract.manifest import ManifestError, load_manifest
from dataprep.contract.store import Location
from dataprep.engine.runner import BuildError
from dataprep.engine.settings import WORK_DIR
from dataprep.recipe.model import Recipe


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


def listed_shards(manifest: Location) -> set[str]:
    """The shard file names an earlier build's manifest lists (none when there is no such manifest)."""
    try:
        return {Path(shard.path).name for shard in load_manifest(manifest).shards}
    except ManifestError:
        return set()


def discard(folder: Path) -> None:
    """Delete a folder so that a kill half-way leaves it whole or gone: renamed first, then removed."""
    doomed = folder.with_name(f"{folder.name}.discarded")
    shutil.rmtree(doomed, ignore_errors=True)  # one a killed run left
    if folder.exists():
        folder.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)
