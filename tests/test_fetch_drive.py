"""Public Google Drive files (`gdrive://<id>/<name>`) through a loopback mirror answering as Drive does:
a small file at once, a large one behind Drive's virus scan warning page, whose link gdown's parser
reads; resumed, verified and unpacked like any archive."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dataprep.fetch import Access, FetchError, fetch
from dataprep.recipe.model import Download

from helpers.loopback_http import serve
from helpers.served_upstreams import drive_served, zip_bytes

ID = "1FxB2Nw-vWUcTUSI_dBpPIykb-uGYoEqV"
URL = f"gdrive://{ID}/wikiart.zip"
ASKED = f"/drive.google.com/uc?id={ID}&export=download"
IMAGES = {f"data/wikiart/images/{n}.jpg": os.urandom(40_000) for n in range(5)}
ARCHIVE = zip_bytes({**IMAGES, "data/readme.txt": b"r"})
WIKIART = Download(url=URL, unpack=True, members={"data/wikiart/images": "images"})


def _unpacked(root: Path) -> dict[str, bytes]:
    return {
        f"data/wikiart/{p.relative_to(root).as_posix()}": p.read_bytes() for p in (root / "images").iterdir()
    }


def test_a_small_drive_file_comes_at_once_and_unpacks_its_members(tmp_path: Path):
    served = drive_served(URL, ARCHIVE, warns=False)
    with serve(served.site()) as site:
        done = fetch(tmp_path, WIKIART, access=Access(mirror=site.url))
    assert site.requests == [(ASKED, None)]
    assert _unpacked(tmp_path) == IMAGES and not (tmp_path / "data").exists()
    assert done.url == URL and done.sha256 == hashlib.sha256(ARCHIVE).hexdigest()


def test_a_large_drive_file_is_fetched_through_the_warning_page_and_resumed_there(tmp_path: Path):
    served = drive_served(URL, ARCHIVE, warns=True)
    confirmed = served.transfers[1]
    with serve(served.site(cut_after={confirmed: 70_000})) as site:
        fetch(tmp_path, WIKIART, access=Access(mirror=site.url), backoff=0.01)
    kept = site.requests[2][1]
    assert [path for path, _ in site.requests] == [ASKED, confirmed, confirmed]
    assert confirmed.startswith(f"/drive.usercontent.google.com/download?id={ID}&export=download&confirm=t")
    assert kept is not None and kept.startswith("bytes=") and int(kept[6:-1]) > 0  # resumed, not restarted
    assert _unpacked(tmp_path) == IMAGES


def test_a_partial_drive_file_of_an_earlier_run_is_continued_after_the_warning_page(tmp_path: Path):
    served = drive_served(URL, ARCHIVE, warns=True)
    with serve(served.site()) as site:
        first = fetch(tmp_path, WIKIART, access=Access(mirror=site.url))
        archive = tmp_path / first.path
        partial = archive.with_name(archive.name + ".partial")
        partial.write_bytes(ARCHIVE[:5000])  # as an interrupted earlier run leaves it
        archive.unlink()
        site.requests.clear()
        again = fetch(tmp_path, WIKIART, access=Access(mirror=site.url))
    assert site.requests == [(ASKED, "bytes=5000-"), (served.transfers[1], "bytes=5000-")]
    assert again.sha256 == first.sha256 and not partial.exists()


def test_drives_own_refusal_is_an_error_naming_the_file(tmp_path: Path):
    quota = b'<html><body><p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently.</p></body></html>'
    served = drive_served(URL, ARCHIVE, warns=False)
    served.files[ASKED] = quota
    served.headers[ASKED] = {"Content-Type": "text/html; charset=utf-8"}
    with serve(served.site()) as site, pytest.raises(FetchError, match="Too many users") as refused:
        fetch(tmp_path, WIKIART, access=Access(mirror=site.url))
    assert str(refused.value).startswith(f"{site.url}{ASKED}: Google Drive served a page instead of the file")
    assert not list(tmp_path.rglob("*.partial"))
