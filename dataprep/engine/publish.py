"""An output in a store (`s3://`, `gs://`): the local work folder that builds it, the store's safety
check, and publishing. The work folder is a local build folder like any other (`.work/`, `shards/`,
`rejects.jsonl`, `manifest.json`); each finished file is uploaded from it whole, as one object (a
single PUT, or a multipart upload that the store shows only once completed), the manifest last."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow.fs

from dataprep.contract.manifest import Manifest, ManifestError, load_manifest
from dataprep.contract.store import LocationError, ObjectPath
from dataprep.contract.token_counts import token_sidecar_path
from dataprep.engine.runner import BuildError
from dataprep.engine.settings import WORK_DIR
from dataprep.files import FileStamp, canonical_json, sha256_file, write_atomic

STORES_FILE = "stores.json"  # in `.work/`: the store outputs this work folder publishes to


def work_folder(store: ObjectPath, given: str | None, joined_cluster: bool) -> Path:
    """The local build folder of an output in a store: `given`, else a cache folder keyed by the URL
    (`$XDG_CACHE_HOME/dataprep/outputs/<16 hex of its sha256>`, `~/.cache` by default). On a joined
    Ray cluster the workers write it too, so it must be given (a folder every node sees)."""
    if given:
        return Path(given)
    if joined_cluster:
        raise LocationError(
            f"output {store} on a joined Ray cluster needs --work-dir (or output.work_dir): "
            "a local folder every node sees, where the build is made before it is uploaded"
        )
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "dataprep" / "outputs" / hashlib.sha256(store.url.encode()).hexdigest()[:16]


def check_store(store: ObjectPath, out: Path) -> None:
    """Refuse an output a build could damage: a missing bucket, an object at the output's own name,
    a prefix holding objects but no dataprep build (a manifest.json, or what this work folder
    published there). Then record in the work folder that it publishes to `store`."""
    try:
        if not store.bucket.is_dir():
            raise BuildError(f"output {store}: bucket {store.bucket} not found (create it first)")
        if store.exists() and not store.is_dir():
            raise BuildError(f"output {store} is an object, not a folder")
        holds_objects = store.is_dir() and any(store.iterdir())
    except OSError as error:
        raise BuildError(f"output {store} cannot be read: {error}") from None
    published = _stores(out)
    if holds_objects and store.url not in published and not _holds_a_manifest(store):
        raise BuildError(
            f"output {store} holds objects but no dataprep build (no manifest.json, and this work folder "
            f"{out} did not publish there): choose a new or empty prefix"
        )
    write_atomic(out / WORK_DIR / STORES_FILE, canonical_json(sorted({*published, store.url})))


def _stores(out: Path) -> list[str]:
    try:
        return json.loads((out / WORK_DIR / STORES_FILE).read_bytes())
    except FileNotFoundError:
        return []


def _holds_a_manifest(store: ObjectPath) -> bool:
    try:
        load_manifest(store / "manifest.json")
    except ManifestError:
        return False
    return True


def publish(local: Path, target: ObjectPath) -> FileStamp:
    """Upload a complete local file as the object `target` (it appears whole, or not at all); the
    object's stamp (size, mtime). The copy runs in pyarrow's C++ without the GIL: a Ctrl-C waits for
    it to end. An object of another size than the file (a read error cut it short) is deleted."""
    filesystem, path = target.filesystem()
    pyarrow.fs.copy_files(
        str(local), path, source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=filesystem
    )
    stamp = FileStamp.of(target.stat())
    if stamp.size != local.stat().st_size:
        unpublish([target])
        raise OSError(f"{target}: uploaded {stamp.size} bytes of {local.stat().st_size}")
    return stamp


def object_stamp(target: ObjectPath) -> FileStamp | None:
    """The object's size and mtime; None when there is no such object."""
    try:
        return FileStamp.of(target.stat())
    except FileNotFoundError:
        return None


def unpublish(targets: Iterable[ObjectPath]) -> None:
    """Delete these objects (those missing are no error)."""
    for target in targets:
        filesystem, path = target.filesystem()
        with contextlib.suppress(FileNotFoundError):
            filesystem.delete_file(path)


def publish_results(out: Path, store: ObjectPath, manifest: Manifest) -> None:
    """Upload the small files the manifest lists (`rejects.jsonl`, the dataset card and wids index, the
    shards' token sidecars) that the store does not hold as they are, delete token sidecars no shard
    has any more, then upload `manifest.json` last; nothing when the store already holds this build
    (a re-run that changed nothing uploads nothing)."""
    try:
        previous: Manifest | None = load_manifest(store / "manifest.json", verified=True)
    except ManifestError:
        previous = None
    listed = [(manifest.rejects_file, manifest.rejects_sha256)]
    listed += [(file.path, file.sha256) for file in manifest.reader_files]
    listed += [(shard.tokens, shard.tokens_sha256) for shard in manifest.shards if shard.tokens]
    changed = [relative for relative, sha256 in listed if not _holds(store / relative, sha256)]
    gone = [
        sidecar
        for shard in manifest.shards
        if not shard.tokens and (sidecar := store / str(token_sidecar_path(Path(shard.path)))).exists()
    ]
    if previous is not None and previous.content_sha256 == manifest.content_sha256 and not changed + gone:
        return
    unpublish([store / "manifest.json"])  # files change: no manifest names the old ones meanwhile
    unpublish(gone)
    for relative in changed:
        publish(out / relative, store / relative)
    publish(out / "manifest.json", store / "manifest.json")


def _holds(target: ObjectPath, sha256: str | None) -> bool:
    """Whether the store holds this object with this sha256 (small files: read back whole)."""
    return target.exists() and sha256_file(target) == sha256
