"""A mirror serves every http(s) URL from `<mirror>/<host>/<path>`: a loopback server stands in for
hosts this machine cannot reach; the original URL stays the download's identity."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from dataprep.cli import main
from dataprep.fetch import STATE_DIR, Access, FetchError, download_key, fetch, http_url
from dataprep.recipe.model import Download

from helpers.loopback_http import Site, serve
from helpers.served_upstreams import zip_bytes
from helpers.upstream import recipe_yaml, write_conversations

COCO = "https://images.cocodataset.org/zips/x.zip"  # unreachable from the tests: only the mirror answers
DATA = os.urandom(50_000)
SHA = hashlib.sha256(DATA).hexdigest()


def test_mirror_urls_keep_host_path_and_query_and_leave_hub_urls_to_hf_endpoint() -> None:
    mirror = Access(mirror="http://m", hub="https://hub.example")
    assert (
        http_url(COCO, Access(mirror="http://m:8/base/"))
        == "http://m:8/base/images.cocodataset.org/zips/x.zip"
    )
    assert http_url("https://u:p@h.org:444/a%20b?x=1&y=2", mirror) == "http://m/h.org:444/a%20b?x=1&y=2"
    assert http_url("https://h.org/a", Access()) == "https://h.org/a"
    assert http_url("hf://datasets/o/n@v1/data/f 1.json", mirror) == (
        "https://hub.example/datasets/o/n/resolve/v1/data/f%201.json"
    )
    assert http_url("hf://models/o/n/f.json", mirror) == "https://hub.example/o/n/resolve/main/f.json"
    assert http_url("gdrive://1FxB2Nw-vWUcTUSI_dBpPIykb-uGYoEqV/wikiart.zip", mirror) == (
        "http://m/drive.google.com/uc?id=1FxB2Nw-vWUcTUSI_dBpPIykb-uGYoEqV&export=download"
    )


def test_an_unreachable_host_is_fetched_from_the_mirror_under_its_original_url(tmp_path: Path) -> None:
    archive = zip_bytes({"train2017/a.jpg": b"a", "train2017/b.jpg": b"b"})
    pinned = hashlib.sha256(archive).hexdigest()
    site = Site(files={"/images.cocodataset.org/zips/x.zip": archive})
    wanted = Download(url=COCO, sha256=pinned, unpack=True, to="coco")
    with serve(site):
        done = fetch(tmp_path, wanted, access=Access(mirror=site.url))
    assert site.requests == [("/images.cocodataset.org/zips/x.zip", None)]
    assert (tmp_path / "coco/train2017/b.jpg").read_bytes() == b"b"
    assert done.url == COCO and done.sha256 == pinned and done.pinned
    marker = json.loads((tmp_path / STATE_DIR / f"{download_key(wanted)}.json").read_bytes())
    assert marker["url"] == COCO  # a mirror is a location: the marker names the upstream
    assert fetch(tmp_path, wanted) == done  # done, whether or not a mirror is given (no request)


def test_the_mirror_comes_from_the_environment_and_checksums_still_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = Site(files={"/example.org/d/train.json": DATA})
    with serve(site):
        monkeypatch.setenv("DATAPREP_MIRROR", site.url)
        with pytest.raises(FetchError, match=f"https://example.org/d/train.json: sha256 {SHA}"):
            fetch(tmp_path, Download(url="https://example.org/d/train.json", sha256="0" * 64))
        done = fetch(tmp_path, Download(url="https://example.org/d/train.json", sha256=SHA))
    assert (tmp_path / "train.json").read_bytes() == DATA and done.url == "https://example.org/d/train.json"
    assert len(site.requests) == 2


@pytest.mark.parametrize("command", ["build", "fetch", "plan", "reproduce"])
def test_every_command_that_fetches_takes_a_mirror(command: str, tmp_path: Path, capsys) -> None:
    """The option is accepted (an unknown one exits through argparse); the missing file is the error."""
    extra = ["--out", str(tmp_path / "o")] if command == "reproduce" else []
    assert main([command, str(tmp_path / "missing.json"), *extra, "--mirror", "http://m"]) in (1, 2)
    assert "missing.json" in capsys.readouterr().err


def test_fetch_and_plan_take_the_mirror_from_the_command_line(ray_cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DATAPREP_MIRROR", raising=False)
    published = tmp_path / "published"
    write_conversations(published / "mine")
    images = {f"images/{image.name}": image.read_bytes() for image in (published / "mine/images").iterdir()}
    site = Site(
        files={
            "/example.org/mine/train.jsonl": (published / "mine/train.jsonl").read_bytes(),
            "/images.cocodataset.org/zips/images.zip": zip_bytes(images),
        }
    )
    fetch_yaml = """    fetch:
      - {url: "https://example.org/mine/train.jsonl"}
      - {url: "https://images.cocodataset.org/zips/images.zip", unpack: true}
"""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("m", tmp_path / "root", tmp_path / "out", extra_sources=fetch_yaml))
    with serve(site):
        assert main(["fetch", str(recipe), "--quiet", "--mirror", site.url]) == 0
        table = capsys.readouterr().out
        assert main(["plan", str(recipe), "--quiet", "--mirror", site.url]) == 0  # all done: no request
    assert sorted(site.requests) == [
        ("/example.org/mine/train.jsonl", None),
        ("/images.cocodataset.org/zips/images.zip", None),
    ]
    assert "train.jsonl" in table and sorted(os.listdir(tmp_path / "root/mine/images")) == sorted(
        os.listdir(published / "mine/images")
    )


SYNTHDOG = "/datasets/naver-clova-ix/synthdog-en"
SHARD = "data/train-00000-of-00084-5e6bc79a.parquet"


def hub_site(revision: str) -> Site:
    """The hub's tree listing (as huggingface_hub asks for it) and resolve URLs of a miniature repo
    (no X-Repo-Commit: the file is fetched from the revision its URL names)."""
    listing = [
        {"type": "directory", "path": "data", "oid": "0" * 40},
        {"type": "file", "path": "README.md", "size": 5, "oid": "1" * 40},
        {"type": "file", "path": SHARD, "size": len(DATA), "oid": "2" * 40},
        {"type": "file", "path": "data/train-00001-of-00084-0a1b2c3d.parquet", "size": 1, "oid": "3" * 40},
        {"type": "file", "path": "data/validation-00000-of-00001-77aa.parquet", "size": 1, "oid": "4" * 40},
    ]
    return Site(
        files={
            f"/api{SYNTHDOG}/tree/{revision}": json.dumps(listing).encode(),
            f"{SYNTHDOG}/resolve/{revision}/{SHARD}": DATA,
        }
    )


def test_a_hub_glob_resolves_to_the_one_file_the_repo_listing_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    glob = "hf://datasets/naver-clova-ix/synthdog-en@v1.0/data/train-00000-of-00084-*.parquet"
    with serve(hub_site("v1.0")) as site:
        monkeypatch.setenv("HF_ENDPOINT", site.url)
        monkeypatch.setenv("DATAPREP_MIRROR", "http://127.0.0.1:9")  # http(s) only: the hub is HF_ENDPOINT's
        done = fetch(tmp_path, Download(url=glob, sha256=SHA))
        again = fetch(tmp_path, Download(url=glob, sha256=SHA))  # done: not even listed again
        with pytest.raises(FetchError, match=r"listing the repo failed: .*404"):
            fetch(tmp_path, Download(url=glob.replace("@v1.0", "@v2.0")))
        for pattern, count in [("data/train-*.parquet", 2), ("data/test-*.parquet", 0)]:
            with pytest.raises(
                FetchError, match=f"matches {count} files of naver-clova-ix/synthdog-en at v1.0"
            ):
                fetch(tmp_path, Download(url=f"hf://datasets/naver-clova-ix/synthdog-en@v1.0/{pattern}"))
    assert done == again and done.url == glob and done.path == "train-00000-of-00084-5e6bc79a.parquet"
    assert (tmp_path / done.path).read_bytes() == DATA
    assert [path for path, _ in site.requests[:2]] == [
        f"/api{SYNTHDOG}/tree/v1.0",
        f"{SYNTHDOG}/resolve/v1.0/{SHARD}",
    ]
    assert len(site.requests) == 5  # then a listing of a missing revision, two for the failing globs
