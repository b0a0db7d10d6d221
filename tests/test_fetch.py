"""Downloads from a real loopback HTTP server: resume, retries, checksums, safe unpacking."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dataprep.fetch import (
    CHUNK,
    STATE_DIR,
    FetchError,
    UnsafeArchive,
    already_fetched,
    download_key,
    fetch,
    unpack,
)
from dataprep.recipe.model import Download

from helpers.loopback_http import Site, serve
from helpers.served_upstreams import zip_bytes

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


def download(url: str, **fields) -> Download:
    return Download(url=url, **fields)


def test_download_is_verified_recorded_and_not_repeated(tmp_path: Path) -> None:
    with serve(Site(files={"/d/train.json": DATA})) as site:
        done = fetch(tmp_path, download(f"{site.url}/d/train.json", sha256=SHA))
        again = fetch(tmp_path, download(f"{site.url}/d/train.json", sha256=SHA))
    assert (tmp_path / "train.json").read_bytes() == DATA
    assert done == again and done.path == "train.json" and done.sha256 == SHA and done.pinned
    assert site.requests == [("/d/train.json", None)]
    assert not list((tmp_path / STATE_DIR).glob("*.partial"))


def test_two_fetches_of_one_file_at_once_take_turns(tmp_path: Path) -> None:
    """Two builds downloading into one source folder: the second waits and finds the file done."""
    with serve(Site(files={"/big.bin": DATA}, pause=0.5)) as site, ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(fetch, tmp_path, download(f"{site.url}/big.bin")) for _ in range(2)]
        first, second = (run.result() for run in runs)
    assert first == second and first.sha256 == SHA and (tmp_path / "big.bin").read_bytes() == DATA
    assert site.requests == [("/big.bin", None)]
    for lock in (tmp_path / STATE_DIR).glob("*.lock"):
        lock.unlink()
    fetch(tmp_path, download(f"{site.url}/big.bin"))  # done: nothing written (a read-only folder works)
    assert not list((tmp_path / STATE_DIR).glob("*.lock"))


def test_a_dropped_connection_resumes_with_a_range_request(tmp_path: Path) -> None:
    site = Site(files={"/big.bin": DATA}, cut_after={"/big.bin": 100_000})
    with serve(site):
        done = fetch(tmp_path, download(f"{site.url}/big.bin", to="sub/big.bin"), backoff=0.01)
    assert (tmp_path / "sub/big.bin").read_bytes() == DATA
    kept = 100_000 // CHUNK * CHUNK  # whole chunks written before the connection dropped
    assert kept > 0 and site.requests == [("/big.bin", None), ("/big.bin", f"bytes={kept}-")]
    assert done.sha256 == SHA and not done.pinned


def test_a_partial_file_from_an_earlier_run_is_continued(tmp_path: Path) -> None:
    (tmp_path / "big.bin.partial").write_bytes(DATA[:1234])
    with serve(Site(files={"/big.bin": DATA})) as site:
        fetch(tmp_path, download(f"{site.url}/big.bin", sha256=SHA))
    assert site.requests == [("/big.bin", "bytes=1234-")]
    assert (tmp_path / "big.bin").read_bytes() == DATA


def test_a_partial_file_that_is_already_whole_is_completed_by_the_416_answer(tmp_path: Path) -> None:
    (tmp_path / "big.bin.partial").write_bytes(DATA)
    with serve(Site(files={"/big.bin": DATA})) as site:
        done = fetch(tmp_path, download(f"{site.url}/big.bin", sha256=SHA))
    assert site.requests == [("/big.bin", f"bytes={len(DATA)}-")]  # answered 416, `bytes */<size>`
    assert done.sha256 == SHA and (tmp_path / "big.bin").read_bytes() == DATA


def test_transient_errors_are_retried_and_permanent_ones_are_not(tmp_path: Path) -> None:
    site = Site(files={"/a": DATA}, status={"/a": [503, 429]})
    with serve(site):
        fetch(tmp_path, download(f"{site.url}/a"), backoff=0.01)
        assert len(site.requests) == 3
        with pytest.raises(FetchError, match="HTTP 404"):
            fetch(tmp_path, download(f"{site.url}/missing"), backoff=0.01)
    assert site.requests[-1] == ("/missing", None) and len(site.requests) == 4


def test_a_checksum_mismatch_keeps_nothing(tmp_path: Path) -> None:
    site = Site(files={"/a.json": DATA})
    with serve(site), pytest.raises(FetchError, match=f"does not match the pinned {'0' * 64}"):
        fetch(tmp_path, download(f"{site.url}/a.json", sha256="0" * 64))
    assert not (tmp_path / "a.json").exists() and not list(tmp_path.rglob("*.partial"))


def test_a_complete_download_is_known_without_hashing_and_a_changed_one_is_left_to_fetch(
    tmp_path: Path,
) -> None:
    spec = download("http://127.0.0.1:9/d/train.json", sha256=SHA)  # nothing listens: nothing is fetched
    assert already_fetched(tmp_path, spec) is None
    with serve(Site(files={"/d/train.json": DATA})) as site:
        done = fetch(tmp_path, download(f"{site.url}/d/train.json", sha256=SHA))
    served = download(f"{site.url}/d/train.json", sha256=SHA)
    assert already_fetched(tmp_path, served) == done
    assert already_fetched(tmp_path, download(f"{site.url}/d/train.json", sha256="0" * 64)) is None
    os.utime(tmp_path / "train.json", ns=(0, 0))  # same bytes, another mtime: `fetch` re-hashes it
    assert already_fetched(tmp_path, served) is None


def test_an_unpacked_file_gone_is_left_to_fetch_which_restores_it(tmp_path: Path) -> None:
    archive = zip_bytes({"images/a.jpg": b"a"})
    with serve(Site(files={"/images.zip": archive})) as site:
        spec = download(f"{site.url}/images.zip", unpack=True, to="data")
        done = fetch(tmp_path, spec)
        assert already_fetched(tmp_path, spec) == done
        (tmp_path / "data/images/a.jpg").unlink()
        assert already_fetched(tmp_path, spec) is None
        assert not (tmp_path / "data/images/a.jpg").exists()  # nothing restored by the check
        fetch(tmp_path, spec)
    assert already_fetched(tmp_path, spec) == done


def test_archives_unpack_into_the_folder_and_are_restored(tmp_path: Path) -> None:
    archive = zip_bytes({"images/a.jpg": b"a", "images/b/c.jpg": b"c"})
    with serve(Site(files={"/images.zip": archive})) as site:
        spec = download(f"{site.url}/images.zip", unpack=True, to="data")
        done = fetch(tmp_path, spec)
        (tmp_path / "data/images/a.jpg").unlink()
        again = fetch(tmp_path, spec)
    assert (
        done.unpacked == ["images/a.jpg", "images/b/c.jpg"]
        and done.path == f"{STATE_DIR}/{download_key(spec)}-images.zip"
    )
    assert again == done and len(site.requests) == 1  # restored from the kept archive
    assert (tmp_path / "data/images/a.jpg").read_bytes() == b"a"


def test_members_move_an_archive_folder_into_the_layout_and_leave_the_rest(tmp_path: Path) -> None:
    """ShareGPT4V's web zips keep their images under `data/<name>/images/`; the layout wants `<name>/images/`."""
    archive = zip_bytes(
        {"data/wikiart/images/a.jpg": b"a", "data/wikiart/images/b/c.jpg": b"c", "data/readme.txt": b"r"}
    )
    with serve(Site(files={"/wikiart.zip": archive})) as site:
        spec = download(
            f"{site.url}/wikiart.zip", unpack=True, members={"data/wikiart/images": "wikiart/images"}
        )
        done = fetch(tmp_path, spec)
    assert done.unpacked == ["wikiart/images/a.jpg", "wikiart/images/b/c.jpg"]
    assert (tmp_path / "wikiart/images/b/c.jpg").read_bytes() == b"c"
    assert not (tmp_path / "data").exists() and not list(tmp_path.rglob("readme.txt"))
    assert download_key(spec) != download_key(download(f"{site.url}/wikiart.zip", unpack=True))


def test_members_of_a_tar_are_moved_and_still_checked(tmp_path: Path) -> None:
    path = tmp_path / "train.tar"
    path.write_bytes(
        tar_of((file_member("train/documents/p1.png", 1), b"p"), (file_member("x.txt", 1), b"x"))
    )
    assert unpack(path, tmp_path / "root", {"train": "."}) == ["documents/p1.png"]
    assert (tmp_path / "root/documents/p1.png").read_bytes() == b"p"
    assert not (tmp_path / "root/x.txt").exists()
    with pytest.raises(UnsafeArchive, match="leaves its root"):
        unpack(path, tmp_path / "other", {"train": ".."})


def test_members_need_unpack_and_relative_folders() -> None:
    with pytest.raises(ValueError, match="needs `unpack: true`"):
        Download(url="https://x/y.zip", members={"a": "b"})
    with pytest.raises(ValueError, match="relative path"):
        Download(url="https://x/y.zip", unpack=True, members={"a": "/b"})


def tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        bundle.addfile(member, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def file_member(name: str, size: int) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.size = size
    return member


def link_member(name: str, target: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = tarfile.SYMTYPE, target
    return member


def hard_link_member(name: str, target: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = tarfile.LNKTYPE, target
    return member


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        for member, data in members:
            bundle.addfile(member, io.BytesIO(data) if data else None)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "archive", "reason"),
    [
        ("dotdot.zip", zip_bytes({"ok.txt": b"1", "../evil.txt": b"x"}), "leaves its root"),
        ("absolute.zip", zip_bytes({"/tmp/evil.txt": b"x"}), "absolute path"),
        ("dotdot.tar.gz", tar_with(file_member("../evil.txt", 1), b"x"), "leaves its root"),
        ("absolute.tar", tar_of((file_member("/etc/abs.txt", 1), b"x")), "absolute path"),
        ("link.tar.gz", tar_with(link_member("images", "/etc")), "symbolic link"),
        (
            "hard.tar",
            tar_of((file_member("ok.txt", 1), b"x"), (hard_link_member("h", "/etc/passwd"), b"")),
            "hard link",
        ),
        # links that only point out once both exist (the pattern behind tarfile's CVE-2025-4517)
        ("chain.tar", tar_of((link_member("a", "."), b""), (link_member("a/b", ".."), b"")), "symbolic link"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else "",
)
def test_unsafe_archives_are_refused_before_anything_is_written(
    tmp_path: Path, name: str, archive: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(archive)
    with pytest.raises(UnsafeArchive, match=reason):
        unpack(path, tmp_path / "root")
    assert not list((tmp_path / "root").iterdir())
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "etc").exists()


def test_a_file_that_is_no_archive_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"not an archive")
    with pytest.raises(FetchError, match="neither a zip nor a tar"):
        unpack(tmp_path / "x.zip", tmp_path / "root")


def test_to_must_stay_inside_the_source_folder() -> None:
    with pytest.raises(ValueError, match="relative path inside"):
        Download(url="https://x/y", to="../y")


def test_a_file_already_in_place_is_kept_unless_its_pinned_checksum_differs(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"placed by hand")
    with serve(Site(files={"/a.json": DATA})) as site:
        kept = fetch(tmp_path, download(f"{site.url}/a.json"))
        assert site.requests == [] and kept.sha256 == hashlib.sha256(b"placed by hand").hexdigest()
        fetch(tmp_path, download(f"{site.url}/a.json", sha256=SHA))
    assert len(site.requests) == 1 and (tmp_path / "a.json").read_bytes() == DATA


def test_the_same_url_to_another_place_is_another_download(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with serve(Site(files={"/a.json": DATA})) as site:
        first = fetch(tmp_path / "link", download(f"{site.url}/a.json"))
        second = fetch(tmp_path / "link", download(f"{site.url}/a.json", to="copy/a.json"))
    assert (first.path, second.path) == ("a.json", "copy/a.json")
    assert (tmp_path / "real/copy/a.json").read_bytes() == DATA and len(site.requests) == 2


def test_two_archives_of_one_name_are_two_downloads(tmp_path: Path) -> None:
    site = Site(
        files={"/train/images.zip": zip_bytes({"t.jpg": b"t"}), "/val/images.zip": zip_bytes({"v.jpg": b"v"})}
    )
    with serve(site):
        train = fetch(tmp_path, download(f"{site.url}/train/images.zip", unpack=True, to="train"))
        val = fetch(tmp_path, download(f"{site.url}/val/images.zip", unpack=True, to="val"))
    assert (train.unpacked, val.unpacked) == (["t.jpg"], ["v.jpg"]) and train.path != val.path
    assert sorted(path for path, _ in site.requests) == ["/train/images.zip", "/val/images.zip"]
    assert (tmp_path / "val/v.jpg").read_bytes() == b"v" and not (tmp_path / "val/t.jpg").exists()


def test_a_new_url_for_the_same_file_is_downloaded_not_taken_from_the_old_one(tmp_path: Path) -> None:
    site = Site(files={"/v1/ann.json": b"version 1", "/v2/ann.json": b"version 2"})
    with serve(site):
        fetch(tmp_path, download(f"{site.url}/v1/ann.json"))
        second = fetch(tmp_path, download(f"{site.url}/v2/ann.json"))
    assert (tmp_path / "ann.json").read_bytes() == b"version 2"
    assert second.sha256 == hashlib.sha256(b"version 2").hexdigest()
    assert len(list((tmp_path / STATE_DIR).glob("*.json"))) == 1  # the v1 marker is gone


@pytest.mark.parametrize("etags", [True, False])
def test_a_file_changed_on_the_server_between_attempts_is_started_over(tmp_path: Path, etags: bool) -> None:
    """With an ETag the server sends the new file whole (If-Range); without one, its new size shows."""
    site = Site(files={"/a.bin": DATA}, cut_after={"/a.bin": 100_000}, etags=etags)
    new = os.urandom(len(DATA) if etags else len(DATA) + 1)
    with serve(site):
        with pytest.raises(FetchError, match="gave up"):
            fetch(tmp_path, download(f"{site.url}/a.bin"), retries=0)
        site.files["/a.bin"] = new
        done = fetch(tmp_path, download(f"{site.url}/a.bin"), backoff=0.01)
    assert (tmp_path / "a.bin").read_bytes() == new and done.sha256 == hashlib.sha256(new).hexdigest()
    assert not list(tmp_path.glob("*.partial*"))


def test_a_server_sending_short_ranges_is_asked_for_the_rest(tmp_path: Path) -> None:
    site = Site(files={"/a.bin": DATA}, cut_after={"/a.bin": 100_000}, range_cap=50_000)
    with serve(site):
        done = fetch(tmp_path, download(f"{site.url}/a.bin", sha256=SHA), retries=1, backoff=0.01)
    assert (tmp_path / "a.bin").read_bytes() == DATA and done.bytes == len(DATA)
    starts = [int(ranged.removeprefix("bytes=").rstrip("-")) for _, ranged in site.requests[1:]]
    assert len(starts) >= 4 and starts == sorted(starts)  # each request continues where the last ended


def test_a_downloaded_file_changed_since_is_checked_again(tmp_path: Path) -> None:
    with serve(Site(files={"/a.bin": DATA})) as site:
        first = fetch(tmp_path, download(f"{site.url}/a.bin"))
        pinned = fetch(tmp_path, download(f"{site.url}/a.bin", sha256=SHA))  # the same file, now pinned
        assert (first.pinned, pinned.pinned, len(site.requests)) == (False, True, 1)
        (tmp_path / "a.bin").write_bytes(DATA[:10])
        again = fetch(tmp_path, download(f"{site.url}/a.bin", sha256=SHA))
    assert len(site.requests) == 2 and (tmp_path / "a.bin").read_bytes() == DATA and again.bytes == len(DATA)


@pytest.mark.parametrize(("status", "retried"), [(507, True), (520, True), (501, False), (403, False)])
def test_which_statuses_are_retried(tmp_path: Path, status: int, retried: bool) -> None:
    site = Site(files={"/a": DATA}, status={"/a": [status]})
    with serve(site):
        if retried:
            fetch(tmp_path, download(f"{site.url}/a"), backoff=0.01)
        else:
            with pytest.raises(FetchError, match=f"HTTP {status}"):
                fetch(tmp_path, download(f"{site.url}/a"), backoff=0.01)
    assert len(site.requests) == (2 if retried else 1)


def test_files_beside_the_markers_are_not_taken_for_markers(tmp_path: Path) -> None:
    state = tmp_path / STATE_DIR
    state.mkdir()
    (state / "0123456789abcdef-other.tar.partial.json").write_text(
        "not json: another download's resume state"
    )
    with serve(Site(files={"/a.json": DATA})) as site:
        done = fetch(tmp_path, download(f"{site.url}/a.json"))
    assert done.sha256 == SHA


def test_an_archive_fetched_by_an_earlier_version_is_not_downloaded_again(tmp_path: Path) -> None:
    with serve(Site(files={"/arch.zip": zip_bytes({"a.txt": b"a"})})) as site:
        spec = download(f"{site.url}/arch.zip", unpack=True)
        done = fetch(tmp_path, spec)
    marker = tmp_path / STATE_DIR / f"{download_key(spec)}.json"
    (tmp_path / done.path).rename(tmp_path / STATE_DIR / "arch.zip")  # the earlier layout, no `stat`
    legacy = {**json.loads(marker.read_text()), "path": f"{STATE_DIR}/arch.zip"}
    del legacy["stat"]
    marker.write_text(json.dumps(legacy))
    again = fetch(tmp_path, spec)  # the server is gone: nothing may be requested
    assert again.path == f"{STATE_DIR}/arch.zip" and again.sha256 == done.sha256
    assert "stat" in json.loads(marker.read_text())
