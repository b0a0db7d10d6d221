"""Upstreams served on loopback: archives packed in memory; the project's manifests copied with
their https hosts moved under a loopback site (`<site>/<host>/<path>`, the layout of a mirror); a
hub's answers to huggingface_hub (HEAD/GET resolve with X-Repo-Commit, X-Linked-Etag/-Size for LFS)
and Google Drive's (a file, or for a large one the "virus scan warning" page that links to it)."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from dataprep.fetch import DRIVE_DOWNLOAD
from dataprep.recipe.model import drive_parts, hub_parts
from dataprep.recipe.upstreams import MANIFESTS

from helpers.loopback_http import Site

DRIVE_PAGE = (  # Drive's answer for a file too large to scan, in the shape Drive serves it (one line)
    '<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title><meta http-equiv="content-type"'
    ' content="text/html; charset=utf-8"/></head><body><div class="uc-main"><div id="uc-text"><p class="uc-warning'
    '-caption">Google Drive can\'t scan this file for viruses.</p><p class="uc-warning-subcaption"><span class="uc'
    '-name-size"><a href="/open?id={id}">{name}</a> (1.3G)</span> is too large for Google to scan for viruses. '
    'Would you still like to download this file?</p><form id="download-form" action="https://drive.usercontent.'
    'google.com/download" method="get"><input type="submit" id="uc-download-link" class="goog-inline-block jfk-'
    'button jfk-button-action" value="Download anyway"/><input type="hidden" name="id" value="{id}"><input type='
    '"hidden" name="export" value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" '
    'name="uuid" value="{uuid}"></form></div></div><div class="uc-footer"><hr class="uc-footer-divider"></div>'
    "</body></html>\n"
)


@dataclass
class Served:
    """What a loopback site answers (paths, with a query where the file is keyed so → bytes, and their
    extra headers), and the paths a first fetch GETs (`transfers`)."""

    files: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    transfers: list[str] = field(default_factory=list)

    def __or__(self, other: Served) -> Served:
        return Served(
            self.files | other.files, self.headers | other.headers, self.transfers + other.transfers
        )

    def site(self, **options) -> Site:
        """A loopback site answering these files (their HTML pages whole, whatever the Range)."""
        pages = {p for p, h in self.headers.items() if h.get("Content-Type", "").startswith("text/html")}
        return Site(files=dict(self.files), headers=dict(self.headers), pages=pages, **options)


def hub_commit(url: str) -> str:
    """The commit a loopback hub resolves an hf:// URL's repo and revision to."""
    kind, owner, name, revision, _ = hub_parts(url)
    return hashlib.sha1(f"{kind}/{owner}/{name}@{revision}".encode()).hexdigest()


def _resolve(url: str, revision: str) -> str:
    kind, owner, name, _, file = hub_parts(url)
    prefix = "" if kind == "models" else f"/{kind}"
    return f"{prefix}/{owner}/{name}/resolve/{quote(revision, safe='')}/{quote(file)}"


def hub_served(url: str, data: bytes) -> Served:
    """An LFS file of a hub repo as the hub answers huggingface_hub: its resolve URL at the URL's
    revision and at the commit that revision is, each naming the commit, sha256 and size."""
    commit = hub_commit(url)
    headers = {
        "X-Repo-Commit": commit,
        "X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"',
        "X-Linked-Size": str(len(data)),
    }
    paths = {_resolve(url, hub_parts(url)[3]), _resolve(url, commit)}
    return Served({p: data for p in paths}, {p: headers for p in paths}, [_resolve(url, commit)])


def drive_served(url: str, data: bytes, warns: bool) -> Served:
    """A public Drive file as Drive answers at its download URL: the file itself, or (`warns`: a large
    file) the warning page, whose form links to the file on drive.usercontent.google.com."""
    file_id, name = drive_parts(url)
    asked = mirror_path(DRIVE_DOWNLOAD.format(file_id))
    attachment = {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{name}"',
    }
    if not warns:
        return Served({asked: data}, {asked: attachment}, [asked])
    uuid = hashlib.sha1(file_id.encode()).hexdigest()
    confirmed = f"/drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t&uuid={uuid}"
    page = DRIVE_PAGE.format(id=file_id, name=name, uuid=uuid).encode()
    return Served(
        {asked: page, confirmed: data},
        {asked: {"Content-Type": "text/html; charset=utf-8"}, confirmed: attachment},
        [asked, confirmed],
    )


def mirror_path(url: str) -> str:
    """The path (and query) a mirror serves an http(s) URL at: `/<host>/<path>[?<query>]`."""
    host, _, rest = url.split("://", 1)[1].partition("/")
    return f"/{host}/{rest}"


def zip_bytes(files: dict[str, bytes]) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    return archive.getvalue()


def tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as bundle:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return archive.getvalue()


def served_manifests(folder: Path, site_url: str, names: list[str] | None = None) -> Path:
    """Copy the project's manifests (or those `names`) into `folder`, every http(s) URL moved to
    `<site_url>/<host>/<path>`; hf:// URLs stay (serve them through HF_ENDPOINT)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if names is None or path.stem in names:
            text = re.sub(r"https?://(?!huggingface\.co)", f"{site_url}/", path.read_text())
            (folder / path.name).write_text(text)
    return folder
