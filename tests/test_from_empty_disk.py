"""The issue's "Done when", on loopback: the whole reference recipe fetched and built from an empty
folder through `--mirror` (hub files through HF_ENDPOINT, Drive files through the mirror, large ones
behind Drive's warning page), every upstream served as its publisher packs it
(tests/helpers/published.py). Refusing a zip bomb and an escaping member is tested in
tests/test_fetch_limits.py and tests/test_fetch.py."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest

from dataprep.cli import main
from dataprep.engine import downloads
from dataprep.engine.downloads import fetch_all
from dataprep.engine.runner import InProcessRunner
from dataprep.exit_status import MANUAL_MISSING
from dataprep.fetch import fetch
from dataprep.recipe.load import load_recipe

from helpers.loopback_http import Fault, Site, serve
from helpers.published import CONVERTED, REFERENCE, Published, publish, publish_converted, served_path

CONVERTED_RECIPE = REFERENCE.with_name("internvl_chat_v1_2_converted.yaml")

MANUAL = ["sam", "ocr_vqa", "geoqa_plus"]
TOKEN = "hf_emptyDiskToken0123456789"  # set for the driver only: the Ray workers started without it


def _run(*argv: str) -> tuple[int, str, str]:
    """`dataprep <argv>` (quietly, where the command has --quiet): status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([*argv] if argv[0] == "manifest" else [*argv, "--quiet"])
    return status, out.getvalue(), err.getvalue()


def _transfers(site: Site) -> list[str]:
    """Paths GET, but the hub's tree listings (asked for once per glob)."""
    return sorted(path for path, _ in site.requests if not path.startswith("/api/"))


def _landed(published: Published, data: Path) -> dict[str, list[str]]:
    """Per public upstream, the paths of its conventional folder whose bytes are not the published ones."""
    return {
        name: [
            path
            for path, payload in layout.items()
            if not (data / published.catalogue[name].folder / path).is_file()
            or (data / published.catalogue[name].folder / path).read_bytes() != payload
        ]
        for name, layout in published.layouts.items()
    }


@pytest.fixture(scope="module")
def empty_disk(ray_cluster, tmp_path_factory):
    """Publish the upstreams, serve them, and run the two commands from an empty folder (fetch, place
    the manual upstreams, fetch again, build) with HF_TOKEN set for this process only, recording each
    command's status and output; the site keeps serving, with HF_ENDPOINT set to it, until the
    module's tests end."""
    work = tmp_path_factory.mktemp("empty_disk")
    published = publish(work / "published")
    site = published.served.site()
    data, out = work / "data", work / "out"
    runs = {}
    with pytest.MonkeyPatch.context() as patch, serve(site):
        patch.setenv("HF_ENDPOINT", site.url)
        patch.setenv("HF_TOKEN", TOKEN)
        patch.delenv("DATAPREP_MIRROR", raising=False)
        where = ["--mirror", site.url, "--data-root", str(data)]
        runs["first"] = _run("fetch", str(REFERENCE), *where)
        runs["first_transfers"] = _transfers(site)
        runs["first_requests"] = len(site.requests)
        runs["first_heads"] = len(site.heads)
        published.place_manual(data)
        runs["placed"] = _run("fetch", str(REFERENCE), *where)
        runs["build"] = _run("build", str(REFERENCE), *where, "--out", str(out))
        yield SimpleNamespace(published=published, site=site, data=data, out=out, runs=runs)


def test_fetch_gets_every_public_upstream_once_and_lists_the_manual_ones(empty_disk):
    published, data, runs = empty_disk.published, empty_disk.data, empty_disk.runs
    status, listed, _ = runs["first"]
    assert status == MANUAL_MISSING
    assert runs["first_transfers"] == sorted(published.served.transfers)
    assert any("drive.usercontent.google.com" in path for path in runs["first_transfers"])  # confirmed
    assert _landed(published, data) == {name: [] for name in published.layouts}
    assert "manual upstreams: 3 of 3 missing" in listed
    for name in MANUAL:
        upstream = published.catalogue[name]
        assert f"[ ] {name}: missing {', '.join(upstream.present)} in {data / upstream.folder}" in listed
        assert upstream.manual.steps.strip().splitlines()[0] in listed


def test_the_drivers_token_reaches_the_hub_from_every_worker_and_is_written_nowhere(empty_disk):
    site, runs = empty_disk.site, empty_disk.runs
    hub = {auth for path, auth in site.authorizations if "/resolve/" in path or path.startswith("/api/")}
    mirror = {
        auth for path, auth in site.authorizations if "/resolve/" not in path and not path.startswith("/api/")
    }
    assert hub == {f"Bearer {TOKEN}"} and mirror == {None}
    assert not [
        name for name, run in runs.items() if isinstance(run, tuple) and TOKEN in "".join(map(str, run))
    ]
    for folder in (empty_disk.data, empty_disk.out):
        leaked = [p for p in folder.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
        assert leaked == []


def test_manual_upstreams_placed_by_hand_are_verified_and_nothing_is_transferred_again(empty_disk):
    site, runs = empty_disk.site, empty_disk.runs
    status, listed, _ = runs["placed"]
    assert status == 0 and "manual upstreams: 0 of 3 missing" in listed
    for name in MANUAL:
        assert f"[x] {name}: present in " in listed
    assert site.requests[runs["first_requests"] :] == []  # nor does the build's own fetch
    assert site.heads[runs["first_heads"] :] == []  # nor is the hub asked again


def test_the_build_uses_every_upstream_file_and_every_entry_keeps_samples(empty_disk):
    published, out, runs = empty_disk.published, empty_disk.out, empty_disk.runs
    status, summary, error = runs["build"]
    assert status == 0, error
    manifest = json.loads((out / "manifest.json").read_text())
    sources = {source["name"]: source for source in manifest["sources"]}
    assert len(sources) == 9 and all(source["in_mixture"] > 0 for source in sources.values()), summary
    facts = published.facts
    expected = {
        "sharegpt4v_cap100k": facts["sharegpt4v"]["subsets"]["cap100k"]["expected_samples"],
        "sharegpt4v_mix665k": facts["sharegpt4v"]["subsets"]["mix665k"]["expected_samples"],
        **{name: facts[name]["expected_samples"] for name in ("llava_zh", "ai2d", "geoqa_plus")},
        **{
            name: facts[name]["splits"]["train"]["expected_samples"] for name in ("dvqa", "chartqa", "docvqa")
        },
    }
    assert {name: sources[name]["kept"] for name in expected} == expected  # as read from the fixtures
    used = {download["url"]: download for source in sources.values() for download in source["downloads"]}
    public = [u for u in published.catalogue.values() if u.public and u.name in published.layouts]
    urls = {d.url for upstream in public for d in upstream.downloads()}
    assert set(used) >= {url for url in urls if "*" not in url}
    assert {url for url in used if url.startswith("gdrive://")} == {
        u for u in urls if u.startswith("gdrive://")
    }
    for url, download in used.items():
        if "*" in url:
            continue
        assert download["sha256"] == hashlib.sha256(published.urls[url]).hexdigest(), url
    synthdog = sources["synthdog_en"]["downloads"]
    assert [d["path"] for d in synthdog] == [
        f"data/{name}" for name in sorted(p.rsplit("/", 1)[1] for p in published.layouts["synthdog_en"])
    ]
    assert {d["url"] for d in sources["llava_zh"]["downloads"]} == {
        "hf://datasets/openbmb/llava_zh@main/llava_instruct_150k_zh.json",
        "http://images.cocodataset.org/zips/train2017.zip",
    }


def test_a_lock_refuses_a_file_the_mirror_changed(empty_disk, tmp_path):
    published, site, data = empty_disk.published, empty_disk.site, empty_disk.data
    recipe = tmp_path / "internvl_chat_v1_2.yaml"
    shutil.copy(REFERENCE, recipe)
    changed = served_path("https://s3-us-east-2.amazonaws.com/prior-datasets/ai2d_test_ids.csv")
    where = ["--mirror", site.url, "--data-root", str(data)]  # the module's mirror, still serving
    assert _run("fetch", str(recipe), *where, "--lock")[0] == 0
    lock = json.loads((tmp_path / "internvl_chat_v1_2.lock.json").read_text())
    site.files[changed] = b"1\n2\n"
    try:
        status, _, refused = _run(
            "fetch", str(recipe), "--mirror", site.url, "--data-root", str(tmp_path / "d")
        )
    finally:
        site.files[changed] = published.served.files[changed]
    assert len(lock["files"]) == len(published.urls)
    assert status == 1
    assert "ai2d_test_ids.csv: sha256" in refused
    assert f"pinned by {tmp_path / 'internvl_chat_v1_2.lock.json'}" in refused


def test_faults_during_a_first_fetch_still_end_with_the_right_bytes(tmp_path, monkeypatch):
    """A dropped connection, 429 with Retry-After, a 500, a short body and a stall, on five files of
    the first fetch, and a drop on a Drive file after its warning page (in this process, with fetch's
    patience shortened)."""
    published = publish(tmp_path / "published")
    stall = 0.5  # fetch's STALL and BACKOFF, shortened for the jobs fetch_all makes in this process
    monkeypatch.setattr(downloads, "fetch", partial(fetch, backoff=0.05, stall=stall))
    coco = "/images.cocodataset.org/zips/train2017.zip"
    chartqa = served_path("hf://datasets/ahmed-masry/ChartQA@main/ChartQA Dataset.zip")
    docvqa = "/datasets.cvc.uab.es/rrc/DocVQA/train.tar.gz"
    shard = next(p for p in published.served.transfers if "/train-00000-of-00084-" in p)
    cap100k = next(p for p in published.served.transfers if p.endswith("_cap100k.json"))
    dvqa = served_path("gdrive://1iKH2lTi1-QxtNUVRxTUWFvUvRHq6HAsZ/images.tar.gz")
    site = published.served.site(
        faults={
            coco: [Fault(after=1000, kind="drop")],
            chartqa: [Fault(status=429, headers={"Retry-After": "1"})],
            docvqa: [Fault(status=500)],
            shard: [Fault(after=2000, kind="short")],
            cap100k: [Fault(after=100, kind="stall", seconds=3.0)],
            dvqa: [Fault(after=3000, kind="drop")],
        },
    )
    data = tmp_path / "data"
    with serve(site):
        monkeypatch.setenv("HF_ENDPOINT", site.url)
        recipe = load_recipe(REFERENCE, {"data_root": str(data)})
        fetch_all(recipe, InProcessRunner(), site.url)
    assert _landed(published, data) == {name: [] for name in published.layouts}
    asked = [path for path, _ in site.requests]
    assert [asked.count(path) for path in (coco, chartqa, docvqa, shard, cap100k, dvqa)] == [
        2
    ] * 6  # a retry each
    assert dvqa.startswith("/drive.usercontent.google.com/")
    times = [t for (p, _), t in zip(site.requests, site.times, strict=True) if p == chartqa]
    assert times[1] - times[0] >= 1.0  # Retry-After, not the shortened backoff
    stalled = [t for (p, _), t in zip(site.requests, site.times, strict=True) if p == cap100k]
    assert stalled[1] - stalled[0] < 3.0 - stall  # the client gave up on the silence, not the server


def test_the_converted_release_builds_from_its_own_mirror_and_differs_from_the_raw_route(
    empty_disk, tmp_path
):
    """InternVL's converted route (recipes/internvl_chat_v1_2_converted.yaml), from an empty folder:
    its mirror serves the nine jsonl files and InternVL's image zips beside the raw image archives."""
    published = empty_disk.published
    site = (published.served | publish_converted(published)).site()
    data, out = tmp_path / "data", tmp_path / "out"
    with pytest.MonkeyPatch.context() as patch, serve(site):
        patch.setenv("HF_ENDPOINT", site.url)
        where = ["--mirror", site.url, "--data-root", str(data)]
        status, listed, _ = _run("fetch", str(CONVERTED_RECIPE), *where)
        published.place_manual(data)
        built = _run("build", str(CONVERTED_RECIPE), *where, "--out", str(out))
    assert status == MANUAL_MISSING and "manual upstreams: 2 of 2 missing" in listed
    assert built[0] == 0, built[2]
    assert sorted((data / "opensource").glob("*.jsonl")) == sorted(
        data / "opensource" / name for name in CONVERTED
    )
    manifest = json.loads((out / "manifest.json").read_text())
    kept = {source["name"]: source["in_mixture"] for source in manifest["sources"]}
    assert len(kept) == 9 and all(kept.values()), kept
    rejected = {source["name"]: source["rejected"] for source in manifest["sources"] if source["rejected"]}
    assert rejected == {
        "synthdog_en": {"image_unreadable": 1}
    }  # every image path found: the fixture's bad page
    status, differences, _ = _run(
        "manifest", "diff", str(empty_disk.out / "manifest.json"), str(out / "manifest.json")
    )
    assert status == 1
    for name in kept:
        assert f"source {name}: " in differences
