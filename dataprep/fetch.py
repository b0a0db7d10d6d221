"""Downloads into a source's folder: HTTP(S) and Hugging Face hub URLs, resumed with Range requests,
retried on transient failures, verified against a pinned sha256, and archives unpacked only after
every member is checked to stay inside the folder. Knows nothing of Ray or of any source.

State lives in `<source folder>/.fetch/`: a completion marker per URL, partial downloads, and the
downloaded archives (kept, so deleted extracted files are restored without a download).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import requests

from dataprep.paths import UnsafePath, resolve_inside
from dataprep.recipe import Download
from dataprep.shards import PARTIAL_SUFFIX, canonical_json, sha256_file, write_atomic

STATE_DIR = ".fetch"
HF_ENDPOINT = "https://huggingface.co"
CHUNK = 1 << 16  # a dropped connection loses at most one chunk of the partial file
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class FetchError(Exception):
    """A download that cannot complete: permanent HTTP status, checksum mismatch, retries exhausted."""


class UnsafeArchive(FetchError):
    """An archive member would land outside the folder (absolute, `..`, link out, device file)."""


class _Transient(Exception):
    """A failure worth retrying (connection lost, 5xx, 429)."""


@dataclass(frozen=True)
class Fetched:
    """What one download produced; `path` is relative to the source folder."""

    url: str
    path: str
    bytes: int
    sha256: str
    pinned: bool
    unpacked: list[str]


def http_url(url: str) -> str:
    """`hf://datasets/<owner>/<name>[@<revision>]/<file>` → the hub's resolve URL (HF_ENDPOINT
    overrides the host); http(s) URLs unchanged."""
    if not url.startswith("hf://"):
        return url
    parts = url[len("hf://") :].split("/", 3)
    if len(parts) < 4 or parts[0] not in ("datasets", "models", "spaces"):
        raise FetchError(f"{url}: expected hf://datasets/<owner>/<name>[@revision]/<file>")
    kind, owner, name, file = parts
    name, _, revision = name.partition("@")
    endpoint = os.environ.get("HF_ENDPOINT", HF_ENDPOINT).rstrip("/")
    prefix = "" if kind == "models" else f"/{kind}"
    return f"{endpoint}{prefix}/{owner}/{name}/resolve/{quote(revision or 'main', safe='')}/{quote(file)}"


def file_name(url: str) -> str:
    name = unquote(Path(urlsplit(http_url(url)).path).name)
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise FetchError(f"{url}: the URL names no plain file name; give `to`")
    return name


def fetch(root: Path, download: Download, *, retries: int = 4, backoff: float = 1.0) -> Fetched:
    """Make `download` present under `root`; skip it when its completion marker says it is done."""
    root = Path(os.path.realpath(root))
    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    where = canonical_json(download.model_dump(mode="json", include={"url", "to", "unpack"}))
    marker = state / f"{hashlib.sha256(where).hexdigest()[:16]}.json"
    done = _done(root, marker, download)
    if done is not None:
        return done
    if download.unpack:
        destination = state / file_name(download.url)
    else:
        destination = _inside(root, download.to or file_name(download.url))
    if not _present(destination, download.sha256):
        _download(http_url(download.url), destination, retries, backoff)
    digest = sha256_file(destination)
    if download.sha256 and digest != download.sha256:
        destination.unlink()
        raise FetchError(f"{download.url}: sha256 {digest} does not match the pinned {download.sha256}")
    unpacked = unpack(destination, _inside(root, download.to_folder)) if download.unpack else []
    result = Fetched(
        url=download.url,
        path=str(destination.relative_to(root)),
        bytes=destination.stat().st_size,
        sha256=digest,
        pinned=download.sha256 is not None,
        unpacked=unpacked,
    )
    write_atomic(marker, canonical_json(asdict(result)))
    return result


def _done(root: Path, marker: Path, download: Download) -> Fetched | None:
    """The recorded result when the marker matches this download and its files are all present;
    extracted files that went missing are restored from the kept archive."""
    if not marker.exists():
        return None
    done = Fetched(**json.loads(marker.read_bytes()))
    if download.sha256 not in (None, done.sha256) or not (root / done.path).exists():
        return None
    if download.unpack and not all((root / download.to_folder / name).exists() for name in done.unpacked):
        unpack(root / done.path, _inside(root, download.to_folder))
    return done


def _inside(root: Path, relative: str) -> Path:
    try:
        return resolve_inside(root, relative)
    except UnsafePath as error:
        raise FetchError(f"`to`: {error}") from None


def _present(path: Path, sha256: str | None) -> bool:
    """A file already in place needs no download: any file when nothing is pinned (it is recorded
    with the checksum it has), else only one with the pinned checksum."""
    return path.exists() and (sha256 is None or sha256_file(path) == sha256)


def _download(url: str, destination: Path, retries: int, backoff: float) -> None:
    """Stream `url` to `destination` through a `.partial` file, resuming it across attempts."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + PARTIAL_SUFFIX)
    for attempt in range(retries + 1):
        try:
            _attempt(url, partial)
            break
        except (_Transient, requests.ConnectionError, requests.Timeout) as error:
            if attempt == retries:
                raise FetchError(f"{url}: {error} (gave up after {retries + 1} attempts)") from None
            time.sleep(backoff * 2**attempt)
    os.replace(partial, destination)


def _attempt(url: str, partial: Path) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    hub = urlsplit(os.environ.get("HF_ENDPOINT", HF_ENDPOINT)).netloc
    if (token := os.environ.get("HF_TOKEN")) and urlsplit(url).netloc == hub:
        headers["Authorization"] = f"Bearer {token}"  # gated datasets; sent to the hub only
    with requests.get(url, headers=headers, stream=True, timeout=60) as response:
        if response.status_code == 416 and have:  # nothing left to send: whole, or longer than the file
            if _total(response) == have:
                return
            partial.unlink()
            raise _Transient(f"partial download of {have} bytes does not match the file; starting over")
        if response.status_code in RETRY_STATUS:
            raise _Transient(f"HTTP {response.status_code}")
        if response.status_code not in (200, 206):
            raise FetchError(f"{url}: HTTP {response.status_code} {response.reason}")
        resumed = response.status_code == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            raise FetchError(
                f"{url}: asked for bytes {have}- but got {response.headers.get('Content-Range')}"
            )
        try:
            with partial.open("ab" if resumed else "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
        except requests.exceptions.ChunkedEncodingError as error:  # connection lost mid-body
            raise _Transient(str(error)) from None


def _total(response: requests.Response) -> int | None:
    """The full size from a `Content-Range: bytes …/<total>` header, if given."""
    total = response.headers.get("Content-Range", "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def unpack(archive: Path, folder: Path) -> list[str]:
    """Extract a zip or tar (any compression) into `folder` after checking every member; return the
    extracted files, relative to `folder`, sorted. Nothing is written if any member is unsafe."""
    folder.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for member in members:
                _check_zip_member(member, folder)
            bundle.extractall(folder)
            return sorted(m.filename for m in members if not m.is_dir())
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as bundle:
            members = bundle.getmembers()
            for member in members:
                try:
                    tarfile.data_filter(member, str(folder))
                except tarfile.FilterError as error:
                    raise UnsafeArchive(f"{archive.name}: member {member.name!r}: {error}") from None
            bundle.extractall(folder, filter="data")
            return sorted(m.name for m in members if m.isfile())
    raise FetchError(f"{archive.name}: `unpack` is set but this is neither a zip nor a tar archive")


def _check_zip_member(member: zipfile.ZipInfo, folder: Path) -> None:
    name = member.filename
    if (member.external_attr >> 16) & 0o170000 == 0o120000:
        raise UnsafeArchive(f"member {name!r} is a symbolic link")
    try:
        resolve_inside(folder, name)
    except UnsafePath as error:
        raise UnsafeArchive(f"member {name!r}: {error}") from None
