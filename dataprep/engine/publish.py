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

from dataprep.contract.manifest import Manifest, ManifestError, load_manifest
from dataprep.contract.store import LocationError, ObjectPath
from dataprep.contract.token_counts import token_sidecar_path
from dataprep.engine.output import listed_shards
from dataprep.engine.runner import BuildError
from dataprep.engine.settings import WORK_DIR
from dataprep.files import FileStamp, canonical_json, write_atomic

STORES_FILE = "stores.json"  # in `.work/`: the store outputs this work folder publishes to
UPLOADS = "uploads"  # in `.work/`: a record per small object uploaded (`<name>.json`)
MANIFEST = "manifest.json"

Listing = dict[str, FileStamp]  # a store's objects by their names relative to its prefix


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


def check_store(store: ObjectPath, out: Path) -> Listing:
    """Refuse an output a build could damage: a missing bucket, an object at the output's own name,
    a prefix holding objects but no dataprep build (a manifest.json, or what this work folder
    published there). Then record in the work folder that it publishes to `store`. The store's
    objects, listed."""
    try:
        if not store.bucket.is_dir():
            raise BuildError(f"output {store}: bucket {store.bucket} not found (create it first)")
        with contextlib.suppress(FileNotFoundError):
            store.stat()  # an object (a prefix is none)
            raise BuildError(f"output {store} is an object, not a folder")
        listing = list_store(store)
    except OSError as error:
        raise BuildError(f"output {store} cannot be read: {error}") from None
    published = _stores(out)
    if listing and store.url not in published and not _holds_a_manifest(store):
        raise BuildError(
            f"output {store} holds objects but no dataprep build (no manifest.json, and this work folder "
            f"{out} did not publish there): choose a new or empty prefix"
        )
    write_atomic(out / WORK_DIR / STORES_FILE, canonical_json(sorted({*published, store.url})))
    return listing


def list_store(store: ObjectPath) -> Listing:
    """Every object under `store`, by its name relative to it, with its stamp: one recursive listing
    (a LIST request per 1,000 objects), no request per object."""
    import pyarrow.fs  # for a store only: a local build imports no pyarrow.fs

    filesystem, path = store.filesystem()
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=True))
    return {
        info.path[len(path) + 1 :]: FileStamp(info.size, info.mtime_ns or 0)
        for info in infos
        if info.type == pyarrow.fs.FileType.File
    }


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
    import pyarrow.fs

    filesystem, path = target.filesystem()
    pyarrow.fs.copy_files(
        str(local), path, source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=filesystem
    )
    stamp = FileStamp.of(target.stat())
    if stamp.size != local.stat().st_size:
        unpublish([target])
        raise OSError(f"{target}: uploaded {stamp.size} bytes of {local.stat().st_size}")
    return stamp


def unpublish(targets: Iterable[ObjectPath]) -> None:
    """Delete these objects (those missing are no error)."""
    for target in targets:
        filesystem, path = target.filesystem()
        with contextlib.suppress(FileNotFoundError):
            filesystem.delete_file(path)


def publish_results(out: Path, store: ObjectPath, manifest: Manifest, listing: Listing) -> None:
    """Upload the small files the manifest lists (`rejects.jsonl`, the dataset card and wids index, the
    shards' token sidecars) unless the store holds them as this work folder uploaded them (by its
    records of uploads and the `listing` taken before the shard stage: no request), delete token
    sidecars no shard has any more, then upload `manifest.json` last; nothing when the store already
    holds this build (a re-run that changed nothing makes no request here)."""
    listed = [(manifest.rejects_file, manifest.rejects_sha256)]
    listed += [(file.path, file.sha256) for file in manifest.reader_files]
    listed += [(shard.tokens, shard.tokens_sha256) for shard in manifest.shards if shard.tokens]
    changed = [(name, sha256) for name, sha256 in listed if not as_uploaded(out, name, sha256, listing)]
    gone = [
        sidecar
        for shard in manifest.shards
        if not shard.tokens and (sidecar := str(token_sidecar_path(Path(shard.path)))) in listing
    ]
    if as_uploaded(out, MANIFEST, manifest.content_sha256, listing) and not changed + gone:
        return
    withdraw_manifest(out / WORK_DIR, store)  # files change: no manifest names the old ones meanwhile
    forget(out / WORK_DIR, gone)
    unpublish(store / name for name in gone)
    for name, sha256 in changed:
        upload(out, store, name, sha256)
    upload(out, store, MANIFEST, manifest.content_sha256)


def _upload_record(work: Path, name: str) -> Path:
    return work / UPLOADS / f"{name}.json"


def upload(out: Path, store: ObjectPath, name: str, sha256: str) -> None:
    """Publish the work folder's file `name` (whose content `sha256` names: the manifest's is its
    content hash) as the store's object `name`, and record what was uploaded: its sha256 and stamp."""
    stamp = publish(out / name, store / name)
    record = {"sha256": sha256, "stamp": stamp.to_json()}
    write_atomic(_upload_record(out / WORK_DIR, name), canonical_json(record))


def as_uploaded(out: Path, name: str, sha256: str | None, listing: Listing) -> bool:
    """Whether the store's object `name` is the one this work folder recorded uploading with this
    sha256: its record names it and its stamp in the `listing` is the one recorded just after."""
    try:
        record = json.loads(_upload_record(out / WORK_DIR, name).read_bytes())
    except FileNotFoundError:
        return False
    stamp = listing.get(name)
    return (
        sha256 is not None
        and record["sha256"] == sha256
        and stamp is not None
        and stamp.to_json() == record["stamp"]
    )


def forget(work: Path, names: Iterable[str]) -> None:
    """Drop the records of these uploads (before their objects are deleted)."""
    for name in names:
        _upload_record(work, name).unlink(missing_ok=True)


def withdraw_manifest(work: Path, store: ObjectPath) -> None:
    """Delete the store's manifest, its record of upload first (so a re-run uploads it again): the
    objects are about to change."""
    forget(work, [MANIFEST])
    unpublish([store / MANIFEST])


def store_shards(out: Path, store: ObjectPath, listing: Listing) -> set[str]:
    """The shard file names the store's manifest lists: the local manifest's, without a request,
    while the store holds the manifest this work folder uploaded with the same content; else read
    from the store (none when it has no manifest)."""
    try:
        local: Manifest | None = load_manifest(out / MANIFEST)
    except ManifestError:
        local = None
    if local is not None and as_uploaded(out, MANIFEST, local.content_sha256, listing):
        return {Path(shard.path).name for shard in local.shards}
    return listed_shards(store / MANIFEST) if MANIFEST in listing else set()
