"""Downloads into a source's folder: HTTP(S), Hugging Face hub and Google Drive files, resumed with
Range requests, retried on transient failures, verified against a pinned sha256 (and an hf:// file
against the hub's own), and archives unpacked only after every member is checked to stay inside the
folder. Knows nothing of Ray or of any source.

Everything hub-specific goes through `huggingface_hub`: the file's URL (`hf_hub_url`), the endpoint
(its `HF_ENDPOINT`), the auth headers (`build_hf_headers`: HF_TOKEN or the login cache), the revision's
commit, size and, for an LFS file, sha256 (`get_hf_file_metadata`), and the repo listing that resolves
an `hf://` glob to the one file it matches (`hub_file`). A Google Drive file (`gdrive://<id>/<name>`)
is requested as `gdown` does, and Drive's "can't scan this file for viruses" page for a large file is
read by gdown's own parser for the confirmed URL. The bytes of all three come through the one transfer
below (Retry-After, stall → Range resume, disk-space check, `.partial` resume, lock), which the
libraries' own downloaders do not all give.

Where downloads come from is fixed once, by the process that starts them (`Access`): a mirror serves
every http(s) and Drive URL from `<mirror>/<host>/<path>[?<query>]`; the original URL stays the
download's identity (marker, manifest, pins). Failed attempts are retried
`RETRIES` times in a row (an attempt that brought bytes starts the count anew), after `Retry-After`
when the server sends one (up to `RETRY_AFTER_CAP` s), else after a backoff doubling from `BACKOFF`
up to `BACKOFF_CAP` s; a connection silent for `STALL` s is dropped and resumed. A download whose
size is known, and an archive's declared unpacked size, must fit the free disk space. An archive is
refused before anything is extracted when it has over `MAX_MEMBERS` members, declares over
`MAX_UNPACKED` bytes, or a member (zip) or the whole (tar) of at least `RATIO_FLOOR` bytes unpacks
over `MAX_RATIO` times its packed size.

State lives in `<source folder>/.fetch/`: a completion marker per URL, partial downloads, and the
downloaded archives (kept, so deleted extracted files are restored without a download).

`requests`, `gdown` and `huggingface_hub` are imported by the functions that make a request or read
the hub's settings, not on import: a build whose downloads are all done (or that has none) never
imports them, in the driver nor in its workers.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shutil
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dataprep.files import PARTIAL_SUFFIX, FileStamp, canonical_json, sha256_file, write_atomic
from dataprep.paths import UnsafePath, resolve_inside
from dataprep.recipe.model import Download, drive_parts, hub_parts

if TYPE_CHECKING:
    import requests

STATE_DIR = ".fetch"
DRIVE_DOWNLOAD = "https://drive.google.com/uc?id={}&export=download"  # as gdown asks for a file
SHA256 = re.compile(r"[0-9a-f]{64}")
MARKER_NAME = re.compile(r"[0-9a-f]{16}\.json")
GLOB = re.compile(r"[*?\[]")
CHUNK = 1 << 16  # a dropped connection loses at most one chunk of the partial file
MIRROR_ENV = "DATAPREP_MIRROR"

RETRIES = 12  # failed attempts in a row, each without a byte of progress, before giving up
BACKOFF = 1.0  # seconds before the first retry, doubled after each failure...
BACKOFF_CAP = 120.0  # ...up to this (twelve failures in a row: about 12 minutes)
RETRY_AFTER_CAP = 600.0  # a server's Retry-After is honoured up to this many seconds
STALL = 60.0  # seconds without a byte before a connection counts as stalled (it is resumed)
CONNECT_TIMEOUT = 30.0

# Archive limits, far above the largest published archives of the mixture (COCO train2017.zip:
# 118k files, 18 GB; an SA-1B tar: ~11k files, ~11 GB; DocVQA: 7 GB):
MAX_MEMBERS = 5_000_000
MAX_UNPACKED = 2 << 40  # 2 TiB declared in one archive
MAX_RATIO = 200  # unpacked / packed: deflate reaches ~1000 only on absurdly repetitive data (a bomb)
RATIO_FLOOR = 16 << 20  # the ratio is checked on members (zip) or archives (tar) at least this large


class FetchError(Exception):
    """A download that cannot complete: permanent HTTP status, checksum mismatch, retries exhausted."""


class ChecksumMismatch(FetchError):
    """A downloaded file whose sha256 is not the one it is pinned to: the published file changed."""


class UnsafeArchive(FetchError):
    """An archive member would land outside the folder (absolute, `..`, link out, device file)."""


class _Confirmed(Exception):
    """Drive answered with its large-file warning page; `url` is the confirmed download it links to."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class _Transient(Exception):
    """A failure worth retrying (connection lost, 5xx, 429, a file changed mid-download), after
    `wait` seconds when the server said how long (Retry-After)."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


@dataclass(frozen=True)
class Fetched:
    """What one download produced; `path` is relative to the source folder."""

    url: str
    path: str
    bytes: int
    sha256: str
    pinned: bool
    unpacked: list[str]
    revision: str | None = None  # the hub commit an hf:// file came from (get_hf_file_metadata's)


def hub_endpoint() -> str:
    """This process's hub: `HF_ENDPOINT` (read now: huggingface_hub reads it once, on import), else
    huggingface_hub's endpoint."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class Access:
    """Where downloads come from and as whom, fixed by the process that starts them and carried to
    every worker (whose own environment may differ): the mirror of http(s) and Drive URLs, the hub of
    hf:// files (`HF_ENDPOINT`) and the hub token (`HF_TOKEN` or the login cache), which no repr,
    marker, lock, manifest or message shows."""

    mirror: str | None = None
    hub: str = field(default_factory=hub_endpoint)  # this process's, when not given
    token: str | None = field(default=None, repr=False)

    @classmethod
    def here(cls, mirror: str | None = None) -> Access:
        """This process's: `mirror`, else `DATAPREP_MIRROR`; its hub (`hub_endpoint`);
        huggingface_hub's token."""
        from huggingface_hub import get_token

        return cls(mirror or os.environ.get(MIRROR_ENV) or None, hub_endpoint(), get_token())

    def mirrored(self, url: str) -> str:
        """An http(s) URL unchanged, or `<mirror>/<host>/<path>[?<query>]` with a mirror."""
        if self.mirror is None:
            return url
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]  # never credentials into the mirror's path
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.mirror.rstrip('/')}/{host}{parts.path or '/'}{query}"

    def hub_headers(self) -> dict[str, str]:
        """huggingface_hub's request headers, with this access's token (none without one)."""
        from huggingface_hub.utils import build_hf_headers

        return build_hf_headers(token=self.token or False)


def http_url(url: str, access: Access) -> str:
    """The URL requested for `url`: an hf:// file's resolve URL on the access's hub (`hf_hub_url`), a
    Drive file's download URL, an http(s) URL as is; the last two from the mirror when there is one."""
    if url.startswith("hf://"):
        from huggingface_hub import hf_hub_url

        kind, owner, name, revision, file = hub_parts(url)
        return hf_hub_url(
            f"{owner}/{name}", file, repo_type=kind.removesuffix("s"), revision=revision, endpoint=access.hub
        )
    if url.startswith("gdrive://"):
        url = DRIVE_DOWNLOAD.format(drive_parts(url)[0])
    return access.mirrored(url)


def at_revision(url: str, revision: str | None) -> str:
    """An hf:// URL at `revision` instead of the one it names; any other URL (or no revision) unchanged."""
    if revision is None or not url.startswith("hf://"):
        return url
    kind, owner, name, _, file = hub_parts(url)
    return f"hf://{kind}/{owner}/{name}@{revision}/{file}"


def hub_file(url: str, access: Access) -> str:
    """An `hf://` URL whose file is a glob (SynthDoG's hashed shard names:
    `hf://datasets/naver-clova-ix/synthdog-en@<rev>/data/train-00000-of-00084-*.parquet`) → the URL of
    the one file of the repo, at that revision, it matches, listed by `huggingface_hub` from the
    access's hub; any other URL unchanged."""
    if not url.startswith("hf://"):
        return url
    kind, owner, name, revision, pattern = hub_parts(url)
    if not GLOB.search(pattern):
        return url
    from huggingface_hub import HfApi

    api = HfApi(endpoint=access.hub, token=access.token or False)
    try:
        files = api.list_repo_files(f"{owner}/{name}", revision=revision, repo_type=kind.removesuffix("s"))
    except Exception as error:  # HTTP statuses, and transport errors whose classes vary by hub version
        raise FetchError(f"{url}: listing the repo failed: {_hub_error(error)}") from None
    matches = [file for file in files if fnmatch.fnmatchcase(file, pattern)]
    if len(matches) != 1:
        raise FetchError(
            f"{url}: the glob matches {len(matches)} files of {owner}/{name} at {revision}, not one: "
            f"{', '.join(matches[:5]) or 'none'}"
        )
    return f"hf://{kind}/{owner}/{name}@{revision}/{matches[0]}"


@dataclass(frozen=True)
class HubFile:
    """What the hub says of one file at a revision (`get_hf_file_metadata`): the commit it resolves
    to, its size, and its sha256 when it is an LFS file (the hub's linked ETag)."""

    commit: str | None
    size: int | None
    sha256: str | None


def hub_metadata(url: str, access: Access) -> HubFile:
    """The hub's metadata of an hf:// file (one HEAD request to its resolve URL, with the token)."""
    from huggingface_hub import get_hf_file_metadata

    try:
        meta = get_hf_file_metadata(
            http_url(url, access),
            token=access.token or False,
            endpoint=access.hub,
            retry_on_errors=True,
        )
    except Exception as error:  # HTTP statuses, and transport errors whose classes vary by hub version
        raise FetchError(f"{url}: the hub's metadata: {_hub_error(error)}") from None
    sha256 = meta.etag if meta.etag and SHA256.fullmatch(meta.etag) else None
    return HubFile(meta.commit_hash, meta.size, sha256)


def _hub_error(error: Exception) -> str:
    """A hub failure in words; a refused one (401/403) says where a token comes from."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    hint = (
        " (a gated or private repo: accept its terms on the hub and set HF_TOKEN, or log in with "
        "`hf auth login`, where the command runs)"
        if status in (401, 403)
        else ""
    )
    return f"{str(error).splitlines()[0] if str(error) else type(error).__name__}{hint}"


def fetch(
    root: Path,
    download: Download,
    *,
    access: Access | None = None,
    size: int | None = None,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
    stall: float = STALL,
    revision: str | None = None,
) -> Fetched:
    """Make `download` present under `root`; skip it when its completion marker says it is done.
    `access` (default: this process's, `Access.here()`) says where from and as whom; `size`, when known
    beforehand, is checked against the free disk space before the first request; `revision` (a lock's
    hub commit) fetches an hf:// file from that revision instead of the one its URL names."""
    root = Path(os.path.realpath(root))
    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    key = download_key(download)
    marker = _marker(root, key)
    done = _done(root, marker, download)  # without the lock: a fetched folder may be read-only
    if done is not None:
        return done
    access = access or Access.here()
    source = hub_file(at_revision(download.url, revision), access)
    named = download
    if GLOB.search(download.file_name):  # a glob's file lands in the folder `to`, under its listed name
        real_name = PurePosixPath(hub_parts(source)[4]).name
        named = download.model_copy(update={"url": source, "to": os.path.join(download.to or ".", real_name)})
    destination = _destination(root, key, named)
    how = _How(
        http_url(source, access), size, retries, backoff, stall, access, source.startswith("gdrive://")
    )
    if source.startswith("hf://"):
        how = _from_hub(download, source, how)
    with _exclusive(state, destination.relative_to(root)):  # another build may be fetching it
        return _fetch_locked(root, download, marker, destination, how)


@dataclass(frozen=True)
class _How:
    """Where from (the URL requested) and how patiently one download is made (see `fetch`); for an
    hf:// file, the hub's request headers, commit and sha256."""

    url: str
    size: int | None
    retries: int
    backoff: float
    stall: float
    access: Access
    drive: bool = False  # a Google Drive file: an HTML answer is Drive's warning page, not the file
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    commit: str | None = None
    hub_sha256: str | None = None


def _from_hub(download: Download, source: str, how: _How) -> _How:
    """Ask the hub for the file's commit, size and sha256: its bytes come from that commit (a branch
    that moves meanwhile changes nothing), with the hub's headers; a pin the hub contradicts is refused
    before any byte is transferred."""
    meta = hub_metadata(source, how.access)
    if download.sha256 and meta.sha256 and meta.sha256 != download.sha256:
        raise ChecksumMismatch(
            f"{download.url}: sha256 {meta.sha256} does not match the pinned {download.sha256}"
        )
    url = http_url(at_revision(source, meta.commit), how.access)
    return replace(
        how,
        url=url,
        size=how.size or meta.size,
        headers=how.access.hub_headers(),
        commit=meta.commit,
        hub_sha256=meta.sha256,
    )


def _fetch_locked(root: Path, download: Download, marker: Path, destination: Path, how: _How) -> Fetched:
    done = _done(root, marker, download)  # the process that held the lock may have fetched it
    if done is not None:
        return done
    earlier = _fetched_from_other_urls(root, marker, destination)
    digest = None if earlier else _present(destination, download.sha256 or how.hub_sha256)
    if digest is None:
        digest = _download(download, destination, how)
    for other in earlier:  # their file is replaced now
        other.unlink()
    unpacked = (
        unpack(destination, _inside(root, download.to_folder), download.members) if download.unpack else []
    )
    result = Fetched(
        url=download.url,
        path=str(destination.relative_to(root)),
        bytes=destination.stat().st_size,
        sha256=digest,
        pinned=download.sha256 is not None,
        unpacked=unpacked,
        revision=how.commit,
    )
    write_atomic(marker, canonical_json({**asdict(result), "stat": FileStamp.read(destination).to_json()}))
    return result


@contextmanager
def _exclusive(state: Path, relative: Path) -> Iterator[None]:
    """Hold a lock on one file of the folder: processes fetching it at once (two builds, `fetch`
    beside `build`) take turns, and the later one finds it done instead of sharing its partial file."""
    name = hashlib.sha256(str(relative).encode("utf-8")).hexdigest()[:16]
    with open(state / f"{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the holder ends, even killed
        yield


def download_key(download: Download) -> str:
    """Names a download's marker and kept archive: its URL, `to` and `unpack` (not the pin)."""
    fields = {"url", "to", "unpack"} | (
        {"members"} if download.members else set()
    )  # keys of earlier versions kept
    where = canonical_json(download.model_dump(mode="json", include=fields))
    return hashlib.sha256(where).hexdigest()[:16]


def target(download: Download) -> str:
    """Where a download that is not unpacked lands, relative to the source folder (for an `hf://` glob,
    `to` is its folder: the file keeps the name the repo lists)."""
    if GLOB.search(download.file_name):
        return os.path.normpath(os.path.join(download.to or ".", download.file_name))
    return os.path.normpath(download.to or download.file_name)


def already_fetched(root: Path, download: Download) -> Fetched | None:
    """What `fetch` would return for a download complete as its marker records (file size and mtime,
    every unpacked file present), read without hashing, unpacking or writing anything; None when
    `fetch` has more to check or do."""
    root = Path(os.path.realpath(root))
    return _done(root, _marker(root, download_key(download)), download, repair=False)


def _done(root: Path, marker: Path, download: Download, repair: bool = True) -> Fetched | None:
    """The recorded result when the marker matches this download and its file is as recorded
    (size and mtime); with `repair`, extracted files that went missing are restored from the kept
    archive and a marker of an earlier version (no stamp) is checked by hashing the file."""
    if not marker.exists():
        return None
    record = json.loads(marker.read_bytes())
    stat = record.pop("stat", None)
    done = Fetched(**record)
    path = root / done.path
    if download.sha256 not in (None, done.sha256) or not path.exists():
        return None
    if stat is None:  # a marker of an earlier version: its file counts if it still hashes as recorded
        if not repair or sha256_file(path) != done.sha256:
            return None
        write_atomic(marker, canonical_json({**asdict(done), "stat": FileStamp.read(path).to_json()}))
    elif not FileStamp.from_json(stat).matches(path):
        return None
    if download.unpack and not all((root / download.to_folder / name).exists() for name in done.unpacked):
        if not repair:
            return None
        unpack(path, _inside(root, download.to_folder), download.members)
    return replace(done, pinned=download.sha256 is not None)


def _fetched_from_other_urls(root: Path, marker: Path, destination: Path) -> list[Path]:
    """Markers of earlier downloads (another URL) into `destination`: their file is not this one."""
    others = []
    for other in marker.parent.glob("*.json"):
        if other == marker or not MARKER_NAME.fullmatch(other.name):  # e.g. a `.partial.json` beside
            continue
        try:
            recorded = json.loads(other.read_bytes()).get("path")
        except FileNotFoundError:  # another download's marker, replaced meanwhile
            continue
        if recorded == str(destination.relative_to(root)):
            others.append(other)
    return others


def _inside(root: Path, relative: str) -> Path:
    try:
        return resolve_inside(root, relative)
    except UnsafePath as error:
        raise FetchError(f"`to`: {error}") from None


def _present(path: Path, sha256: str | None) -> str | None:
    """The checksum of a file already in place that needs no download: any file when nothing is
    pinned (it is recorded with the checksum it has), else only one with the pinned checksum."""
    if not path.exists():
        return None
    digest = sha256_file(path)
    return digest if sha256 in (None, digest) else None


def _download(download: Download, destination: Path, how: _How) -> str:
    """Stream the URL to `destination` through a `.partial` file, resumed across attempts while the
    server's validator (ETag / Last-Modified) and size stay the same; verify it (against its pin, and
    the hub's sha256) before renaming it into place; return its sha256."""
    import requests

    url = how.url
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + PARTIAL_SUFFIX)
    if how.size is not None:
        _ensure_room(partial.parent, how.size - _size(partial), url)
    failures = 0
    while True:
        have = _size(partial)
        try:
            if _attempt(url, partial, how):
                break
            if _size(partial) <= have:
                raise _Transient("the server sent no data")
        except _Confirmed as confirmed:
            if url != how.url:  # the confirmed URL answered with the warning page again
                raise FetchError(
                    f"{download.url}: Google Drive does not serve the file it confirmed"
                ) from None
            url = how.access.mirrored(confirmed.url)
        except (_Transient, requests.ConnectionError, requests.Timeout) as error:
            failures = 1 if _size(partial) > have else failures + 1  # progress starts the count anew
            if failures > how.retries:
                raise FetchError(f"{url}: {error} (gave up after {failures} attempts in a row)") from None
            wait = error.wait if isinstance(error, _Transient) else None
            time.sleep(wait if wait is not None else min(how.backoff * 2 ** (failures - 1), BACKOFF_CAP))
    digest = sha256_file(partial)
    if download.sha256 and digest != download.sha256:
        _discard(partial)
        raise ChecksumMismatch(f"{download.url}: sha256 {digest} does not match the pinned {download.sha256}")
    if how.hub_sha256 and digest != how.hub_sha256:
        _discard(partial)
        raise FetchError(
            f"{download.url}: sha256 {digest} is not the {how.hub_sha256} the hub gives for it "
            "(the transfer was corrupted); run again"
        )
    os.replace(partial, destination)
    _resume_info(partial).unlink(missing_ok=True)
    return digest


def _attempt(url: str, partial: Path, how: _How) -> bool:
    """One request for the rest of `partial`; True when the file is complete."""
    import requests

    have = _size(partial)
    info_path = _resume_info(partial)
    info = json.loads(info_path.read_bytes()) if have and info_path.exists() else {}
    # byte ranges of the file itself, not of a compressed body
    headers = {**how.headers, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if info.get("validator"):
            headers["If-Range"] = info["validator"]  # a changed file comes back whole (200)
    # the hub's Authorization goes to the hub only: requests drops it on a redirect to another host
    with requests.get(url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, how.stall)) as response:
        if response.status_code == 416 and have:  # nothing left to send: whole, or longer than the file
            if _content_range(response)[1] == have == info.get("total", have):
                return True
            _discard(partial)
            raise _Transient(f"partial download of {have} bytes does not match the file; starting over")
        if _retryable(response.status_code):
            raise _Transient(f"HTTP {response.status_code}", _retry_after(response))
        if response.status_code not in (200, 206):
            raise FetchError(f"{url}: HTTP {response.status_code} {response.reason}")
        if how.drive and response.headers.get("Content-Type", "").startswith("text/html"):
            raise _Confirmed(_confirmed_url(url, response.text))
        resumed = response.status_code == 206
        if resumed:
            start, total = _content_range(response)
            if start != have:
                raise FetchError(
                    f"{url}: asked for bytes {have}- but got {response.headers.get('Content-Range')}"
                )
            if info.get("total") not in (None, total):
                _discard(partial)
                raise _Transient("the file changed on the server since the partial download; starting over")
        else:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        if total is not None:  # a whole file (200) overwrites the partial one: the same room either way
            _ensure_room(partial.parent, total - have, url)
        if not resumed:
            validator = response.headers.get("ETag", "")
            if not validator or validator.startswith("W/"):  # If-Range needs a strong validator
                validator = response.headers.get("Last-Modified", "")
            started = {"validator": validator, "total": total}
            write_atomic(info_path, canonical_json(started))
        try:
            with partial.open("ab" if resumed else "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
        except requests.exceptions.ChunkedEncodingError as error:  # connection lost mid-body
            raise _Transient(str(error)) from None
    size = _size(partial)
    if total is not None and size > total:
        _discard(partial)
        raise _Transient(f"received {size} bytes of a {total}-byte file; starting over")
    return total is None or size == total


def _confirmed_url(url: str, page: str) -> str:
    """The download that Drive's "can't scan this file for viruses" page (served for a large file)
    confirms, as gdown reads it; Drive's own error (quota exceeded, no access) as a FetchError."""
    from gdown.download import get_url_from_gdrive_confirmation
    from gdown.exceptions import FileURLRetrievalError

    try:
        return get_url_from_gdrive_confirmation(page)
    except FileURLRetrievalError as error:
        raise FetchError(f"{url}: Google Drive served a page instead of the file: {error}") from None


def _retry_after(response: requests.Response) -> float | None:
    """Seconds the server asks to wait (`Retry-After`: delta-seconds or an HTTP date), at most
    `RETRY_AFTER_CAP`; None when it says nothing usable."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is in GMT
        when = when.replace(tzinfo=timezone.utc)
    return min(max(0.0, (when - datetime.now(timezone.utc)).total_seconds()), RETRY_AFTER_CAP)


def _ensure_room(folder: Path, needed: int, what: str) -> None:
    """Refuse to start writing `needed` bytes into `folder`'s file system when it has less free."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise FetchError(
            f"{what}: needs {needed:,} bytes but {folder} has only {free:,} bytes free; make room and run again"
        )


def fetched_here(root: Path, download: Download) -> bool:
    """Whether this folder has a completion marker of `download` (it fetched it, or is fetching it anew)."""
    return _marker(Path(os.path.realpath(root)), download_key(download)).exists()


def _marker(root: Path, key: str) -> Path:
    """A download's completion marker, named by its key."""
    return root / STATE_DIR / f"{key}.json"


def _destination(root: Path, key: str, download: Download) -> Path:
    """Where a download's file lands: an archive under `.fetch/` (kept per download: two archives of one
    name are two files), any other file at its target."""
    return (
        root / STATE_DIR / f"{key}-{download.file_name}"
        if download.unpack
        else _inside(root, target(download))
    )


def transferred(root: Path, download: Download) -> tuple[int, int | None]:
    """Bytes of `download` under `root` so far and its whole size when known, for a progress line:
    a completed download's recorded size, else its partial file's and the size the server gave.
    A glob's file is named only once listed: it counts when complete."""
    root = Path(os.path.realpath(root))
    key = download_key(download)
    try:
        done = json.loads(_marker(root, key).read_bytes())
        return done["bytes"], done["bytes"]
    except (OSError, ValueError, KeyError):  # not done yet (or its marker is being replaced)
        pass
    if GLOB.search(download.file_name):
        return 0, None
    try:
        destination = _destination(root, key, download)
        partial = destination.with_name(destination.name + PARTIAL_SUFFIX)
        info = json.loads(_resume_info(partial).read_bytes()) if _resume_info(partial).exists() else {}
        return _size(partial), info.get("total")
    except (OSError, ValueError, FetchError):
        return 0, None


def _retryable(status: int) -> bool:
    """Timeouts, rate limits and server errors but those that say the request itself is wrong."""
    return status in (408, 425, 429) or (500 <= status < 600 and status not in (501, 505))


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _resume_info(partial: Path) -> Path:
    """The validator and size the server gave when `partial` was started."""
    return partial.with_name(partial.name + ".json")


def _discard(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    _resume_info(partial).unlink(missing_ok=True)


def _content_range(response: requests.Response) -> tuple[int | None, int | None]:
    """(first byte, full size) from `Content-Range: bytes <first>-<last>/<size or *>`, or from
    `bytes */<size>` (a 416 answer: no first byte)."""
    header = response.headers.get("Content-Range", "").strip()
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", header)
    if match is None:
        return None, None
    first, size = match.groups()
    return (int(first) if first else None), (int(size) if size.isdigit() else None)


def unpack(archive: Path, folder: Path, folders: Mapping[str, str] | None = None) -> list[str]:
    """Extract a zip or tar (any compression) into `folder` after checking every member; return the
    extracted files, relative to `folder`, sorted. With `folders` (archive folder → folder under
    `folder`), only members under those folders are extracted, moved to theirs. Only files and folders
    whose names stay inside `folder` are admitted (no links, devices or absolute names), within the
    archive limits (`MAX_MEMBERS`, `MAX_UNPACKED`, `MAX_RATIO`) and the free disk space; nothing is
    written if any member is refused. A zip member whose bytes differ from its declared size is an
    error (a tar member is read for exactly its declared size)."""
    folder.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            infos = bundle.infolist()
            _check_count(archive, len(infos))
            members = []
            for member in infos:
                is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
                _check_member(archive, member.filename, "a symbolic link" if is_link else None, folder)
                _check_ratio(archive, f"member {member.filename!r}", member.file_size, member.compress_size)
                if (name := _placed(member.filename, folders)) is not None:
                    _check_member(archive, name, None, folder)
                    member.filename = name  # the stored name is still checked against the local header
                    members.append(member)
            files = [(m.filename, m.file_size) for m in members if not m.is_dir()]
            _check_sizes(archive, folder, sum(m.file_size for m in infos), files)
            for member in members:
                _extract_zip_member(bundle, archive, member, folder)
            return sorted(m.filename for m in members if not m.is_dir())
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as bundle:
            members, seen = [], []
            for member in bundle:  # counted as read: a tar's member list is known only at its end
                seen.append(member)
                _check_count(archive, len(seen))
                kind = None if member.isfile() or member.isdir() else _TAR_KINDS.get(member.type, "special")
                _check_member(archive, member.name, kind, folder)
                if (name := _placed(member.name, folders)) is not None:
                    _check_member(archive, name, None, folder)
                    member.name = name
                    members.append(member)
            declared = sum(m.size for m in seen if m.isfile())
            _check_ratio(archive, "the archive", declared, archive.stat().st_size)
            _check_sizes(archive, folder, declared, [(m.name, m.size) for m in members if m.isfile()])
            try:
                bundle.extractall(folder, members=members, filter="data")
            except (tarfile.TarError, EOFError) as error:
                raise FetchError(f"{archive.name}: {error}") from None
            return sorted(m.name for m in members if m.isfile())
    raise FetchError(f"{archive.name}: `unpack` is set but this is neither a zip nor a tar archive")


def _check_count(archive: Path, count: int) -> None:
    if count > MAX_MEMBERS:
        raise UnsafeArchive(f"{archive.name}: over {MAX_MEMBERS:,} members (MAX_MEMBERS); refused")


def _check_ratio(archive: Path, what: str, unpacked: int, packed: int) -> None:
    """Refuse a zip bomb: `what` unpacks to over MAX_RATIO times its packed size (when large)."""
    if unpacked >= RATIO_FLOOR and unpacked > MAX_RATIO * max(packed, 1):
        raise UnsafeArchive(
            f"{archive.name}: {what} unpacks {packed:,} bytes into {unpacked:,} (over {MAX_RATIO}:1, "
            "MAX_RATIO): a zip bomb; refused"
        )


def _check_sizes(archive: Path, folder: Path, declared: int, files: list[tuple[str, int]]) -> None:
    """The archive declares at most MAX_UNPACKED bytes, and the files to write fit the free space
    (less what files already in place of them hold)."""
    if declared > MAX_UNPACKED:
        raise UnsafeArchive(
            f"{archive.name}: declares {declared:,} unpacked bytes, over {MAX_UNPACKED:,} (MAX_UNPACKED); refused"
        )
    needed = sum(max(0, size - _size(folder / name)) for name, size in files)
    _ensure_room(folder, needed, f"unpacking {archive.name}")


def _extract_zip_member(
    bundle: zipfile.ZipFile, archive: Path, member: zipfile.ZipInfo, folder: Path
) -> None:
    """Write one checked member, streamed; its bytes must be as many as it declares and match its CRC."""
    path = folder / member.filename
    if member.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with bundle.open(member) as source, path.open("wb") as out:
            while (chunk := source.read(CHUNK)) and written <= member.file_size:
                written += len(chunk)
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        path.unlink(missing_ok=True)
        raise FetchError(f"{archive.name}: member {member.orig_filename!r}: {error}") from None
    if written != member.file_size:
        path.unlink(missing_ok=True)
        raise FetchError(
            f"{archive.name}: member {member.orig_filename!r} unpacks to {written:,} bytes, "
            f"not the {member.file_size:,} it declares"
        )


def _placed(name: str, folders: Mapping[str, str] | None) -> str | None:
    """Where member `name` goes under the unpack folder: as stored without `folders`, else moved from
    the first archive folder holding it to its folder; None for a member outside them all."""
    if not folders:
        return name
    path = PurePosixPath(name)
    for source, target in folders.items():
        if path.is_relative_to(source):
            placed = str(PurePosixPath(target) / path.relative_to(source))
            return None if placed == "." else placed + ("/" if name.endswith("/") else "")
    return None


_TAR_KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a device",
    tarfile.BLKTYPE: "a device",
    tarfile.FIFOTYPE: "a FIFO",
}


def _check_member(archive: Path, name: str, refused_kind: str | None, folder: Path) -> None:
    """Refuse a member that is no plain file or folder (`refused_kind` names it) or leaves `folder`."""
    if refused_kind is not None:
        raise UnsafeArchive(
            f"{archive.name}: member {name!r} is {refused_kind}; only files and folders are unpacked"
        )
    try:
        resolve_inside(folder, name)
    except UnsafePath as error:
        raise UnsafeArchive(f"{archive.name}: member {name!r}: {error}") from None
