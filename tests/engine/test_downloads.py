"""Every entry's downloads (its `fetch` files and its upstreams' files), from a loopback HTTP server."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from functools import partial

import pytest

from dataprep.engine import downloads
from dataprep.engine.build import build
from dataprep.engine.downloads import fetch_all, recipe_upstreams
from dataprep.engine.runner import BuildError, InProcessRunner
from dataprep.engine.settings import BuildSettings
from dataprep.fetch import download_key, fetch
from dataprep.fixtures import chartqa
from dataprep.progress import human_bytes
from dataprep.recipe.load import load_recipe
from dataprep.recipe.lock import locked_file, write_lock
from dataprep.recipe.model import Download, Recipe
from dataprep.recipe.upstreams import MANIFESTS, load_upstream

from helpers.builds import build_recipe
from helpers.fresh_imports import imported_by
from helpers.loopback_http import Site, serve
from helpers.served_upstreams import Served, hub_served, served_manifests, tar_gz_bytes, zip_bytes
from helpers.upstream import write_conversations

REPO = MANIFESTS.parent


def test_sources_are_fetched_over_http_before_they_are_read(ray_cluster, tmp_path):
    published = tmp_path / "published"
    facts = write_conversations(published / "mine")
    archive = zip_bytes(
        {
            f"images/{image.name}": image.read_bytes()
            for image in sorted((published / "mine/images").iterdir())
        }
    )
    annotations = (published / "mine/train.jsonl").read_bytes()
    site = Site(files={"/mine/train.jsonl": annotations, "/mine/images.zip": archive})
    with serve(site):
        fetch = f"""    fetch:
      - {{url: "{site.url}/mine/train.jsonl", sha256: {hashlib.sha256(annotations).hexdigest()}}}
      - {{url: "{site.url}/mine/images.zip", unpack: true}}
"""
        _, manifest = build_recipe(tmp_path, tmp_path / "fetched", extra_sources=fetch)
        _, again = build_recipe(tmp_path, tmp_path / "fetched", extra_sources=fetch)  # nothing is downloaded
    assert sorted(site.requests) == [("/mine/images.zip", None), ("/mine/train.jsonl", None)]
    (source,) = manifest.sources
    assert source.kept == len(facts["expected"])
    assert source.rejected == dict(sorted(Counter(facts["rejects"].values()).items()))
    assert [(d.path, d.pinned, d.unpacked_files) for d in source.downloads] == [
        ("train.jsonl", True, 0),
        (
            f".fetch/{download_key(Download(url=f'{site.url}/mine/images.zip', unpack=True))}-images.zip",
            False,
            len(list((published / "mine/images").iterdir())),
        ),
    ]
    assert "fetch" not in manifest.recipe["sources"][0]  # a location, like data_root
    assert manifest.build.stages["fetch"] >= 0 and again.content_sha256 == manifest.content_sha256


@pytest.mark.parametrize(
    ("downloads", "error"),
    [
        (["{url}/a.json", "{url}/b/a.json"], "both download to"),
        (["{url}/a.json", "{url}/other.json\n        to: a.json"], "both download to"),
        (
            [
                f"{{url}}/a.json\n        sha256: '{'0' * 64}'",
                f"{{url}}/a.json\n        sha256: '{'1' * 64}'",
            ],
            "two different",
        ),
    ],
)
def test_downloads_that_would_overwrite_each_other_are_refused(
    ray_cluster, upstream, tmp_path, downloads, error
):
    data_root, _ = upstream
    fetch = "    fetch:\n" + "".join(f"      - url: {item}\n" for item in downloads)
    with serve(Site()) as site, pytest.raises(BuildError, match=error):
        build_recipe(tmp_path, data_root, extra_sources=fetch.replace("{url}", site.url))
    assert site.requests == []


def _recipe(tmp_path, sources: str, manifests=None) -> Recipe:
    """`tmp_path/recipe.yaml` with these `sources` lines, data under `tmp_path/data` (and the manifests
    of `manifests`, else the project's)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"name: r\ndata_root: {tmp_path / 'data'}\n"
        + (f"manifests: {manifests}\n" if manifests else "")
        + f"output: {{dir: {tmp_path / 'out'}}}\nsources:\n{sources}"
    )
    return load_recipe(recipe)


def _upstream_recipe(tmp_path, manifests, upstreams_by_entry: dict[str, str]) -> Recipe:
    entries = "".join(
        f"  - {{source: conversations, name: {label}, path: {label}, file: a.jsonl, upstreams: {names}}}\n"
        for label, names in upstreams_by_entry.items()
    )
    return _recipe(tmp_path, entries, manifests)


def test_an_image_set_named_by_two_entries_is_fetched_once_into_its_own_folder(tmp_path):
    train2017 = zip_bytes({"train2017/000000000009.jpg": b"jpeg 9", "train2017/000000000025.jpg": b"jpeg 25"})
    site = Site(files={"/images.cocodataset.org/zips/train2017.zip": train2017})
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    with serve(site):
        served_manifests(manifests, site.url, ["coco_train2017"])
        recipe = _upstream_recipe(
            tmp_path, manifests, {"llava_zh": "[coco_train2017]", "sharegpt4v": "[coco_train2017]"}
        )
        reports = fetch_all(recipe, InProcessRunner())
        again = fetch_all(recipe, InProcessRunner())
    assert site.requests == [
        ("/images.cocodataset.org/zips/train2017.zip", None)
    ]  # once, for both entries and both runs
    assert (tmp_path / "data/coco/train2017/000000000025.jpg").read_bytes() == b"jpeg 25"
    assert reports == again
    (first,), (second,) = reports["llava_zh"], reports["sharegpt4v"]
    assert (
        first.sha256 == second.sha256 == hashlib.sha256(train2017).hexdigest() and first.unpacked_files == 2
    )
    assert first.path.startswith("../coco/.fetch/") and first.path.endswith("-train2017.zip")
    assert recipe_upstreams(recipe) == [load_upstream(manifests / "coco_train2017.yaml")]


def test_a_hub_upstream_is_fetched_from_hf_endpoint_and_built(tmp_path, monkeypatch):
    """The project's own ChartQA manifest, its zip served under the hub's path for it."""
    published = tmp_path / "published"
    facts = chartqa.generate(published)
    files = {
        str(path.relative_to(published)): path.read_bytes() for path in published.rglob("*") if path.is_file()
    }
    site = Site(files={"/datasets/ahmed-masry/ChartQA/resolve/main/ChartQA%20Dataset.zip": zip_bytes(files)})
    recipe = _recipe(tmp_path, "  - {source: chartqa, path: chartqa, split: train, upstreams: [chartqa]}\n")
    with serve(site):
        monkeypatch.setenv("HF_ENDPOINT", site.url)
        manifest = build(recipe, BuildSettings(out=tmp_path / "out", progress=False), InProcessRunner())
    assert (tmp_path / "data/chartqa/ChartQA Dataset/train/train_human.json").exists()
    (source,) = manifest.sources
    assert source.kept == facts["expected_samples"]
    assert [download.url for download in source.downloads] == [
        "hf://datasets/ahmed-masry/ChartQA@main/ChartQA Dataset.zip"
    ]


def test_a_build_with_a_lock_refuses_a_file_that_differs_from_it(tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    site = Site(
        files={"/images.cocodataset.org/zips/train2017.zip": zip_bytes({"train2017/1.jpg": b"changed"})}
    )
    lock = tmp_path / "recipe.lock.json"
    with serve(site):
        served_manifests(manifests, site.url, ["coco_train2017"])
        write_lock(lock, [locked_file(f"{site.url}/images.cocodataset.org/zips/train2017.zip", 10, "0" * 64)])
        recipe = _upstream_recipe(tmp_path, manifests, {"mine": "[coco_train2017]"})
        settings = BuildSettings(out=tmp_path / "out", progress=False, lock=lock)
        with pytest.raises(BuildError, match=f"does not match the pinned 0{{64}} \\(pinned by {lock}"):
            build(recipe, settings, InProcessRunner())
        del site.files["/images.cocodataset.org/zips/train2017.zip"]  # now a 404: not a changed file
        with pytest.raises(BuildError, match="HTTP 404") as gone:
            build(recipe, settings, InProcessRunner())
    assert "pinned by" not in str(gone.value) and "delete the lock" not in str(gone.value)
    assert not (tmp_path / "data/coco/train2017").exists()


def test_every_public_upstream_of_the_reference_recipe_lands_where_its_manifest_says(tmp_path, monkeypatch):
    """The project's manifests through a loopback mirror (`<loopback>/<host>/<path>`, Drive's download
    URL among them) and hf:// through HF_ENDPOINT, with miniature archives named and laid out as
    published: after one fetch every public upstream is present and every manual one is missing."""
    hub = "/datasets/{}/resolve/main/{}"
    drive = "/drive.google.com/uc?id={}&export=download"
    web = {  # ShareGPT4V's web zips: Drive id → the folder inside
        "1f4v_3e1OJtyYqam1CEp6RenCNTU5_mG2": "share_textvqa",
        "1-SB71C3j1mVg0kDDXwj2IWGEoBoRUD-J": "web-celebrity",
        "1JpJkN7ZMA50xAhMx9O-rVb5yLhfGm3_o": "web-landmark",
        "1FxB2Nw-vWUcTUSI_dBpPIykb-uGYoEqV": "wikiart",
    }
    site = Site(
        files={
            **{drive.format(i): zip_bytes({f"data/{name}/images/1.jpg": b"jpg"}) for i, name in web.items()},
            drive.format("1iKH2lTi1-QxtNUVRxTUWFvUvRHq6HAsZ"): tar_gz_bytes(
                {"images/bar_train_0.png": b"png"}
            ),
            drive.format("1VKYd3kaiCFziSsSv4SgQJ2T5m7jxuh5u"): tar_gz_bytes({"train_qa.json": b"[]"}),
            hub.format("Lin-Chen/ShareGPT4V", "sharegpt4v_instruct_gpt4-vision_cap100k.json"): b"[]",
            hub.format(
                "Lin-Chen/ShareGPT4V", "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json"
            ): b"[]",
            hub.format("openbmb/llava_zh", "llava_instruct_150k_zh.json"): b"[]",
            hub.format("ahmed-masry/ChartQA", "ChartQA%20Dataset.zip"): zip_bytes(
                {"ChartQA Dataset/train/train_human.json": b"[]", "ChartQA Dataset/train/png/1.png": b"png"}
            ),
            hub.format("liuhaotian/LLaVA-Pretrain", "images.zip"): zip_bytes({"00000/000000010.jpg": b"jpg"}),
            "/ai2-public-datasets.s3.amazonaws.com/diagrams/ai2d-all.zip": zip_bytes(
                {
                    f"ai2d/{folder}/0.png{'.json' if folder != 'images' else ''}": b"x"
                    for folder in ("images", "questions", "annotations")
                }
            ),
            "/s3-us-east-2.amazonaws.com/prior-datasets/ai2d_test_ids.csv": b"1\n",
            "/datasets.cvc.uab.es/rrc/DocVQA/train.tar.gz": tar_gz_bytes({"train/documents/a_1.png": b"png"}),
            "/images.cocodataset.org/zips/train2017.zip": zip_bytes({"train2017/000000000009.jpg": b"jpg"}),
            "/downloads.cs.stanford.edu/nlp/data/gqa/images.zip": zip_bytes({"images/1.jpg": b"jpg"}),
            "/dl.fbaipublicfiles.com/textvqa/images/train_val_images.zip": zip_bytes(
                {"train_images/a.jpg": b"j"}
            ),
            "/cs.stanford.edu/people/rak248/VG_100K_2/images.zip": zip_bytes({"VG_100K/1.jpg": b"jpg"}),
            "/cs.stanford.edu/people/rak248/VG_100K_2/images2.zip": zip_bytes({"VG_100K_2/2.jpg": b"jpg"}),
            "/api/datasets/naver-clova-ix/synthdog-en/tree/main": json.dumps(
                [
                    {
                        "type": "file",
                        "path": f"data/train-0000{shard}-of-00084-{shard}a{shard}.parquet",
                        "size": 1,
                        "oid": "0" * 40,
                    }
                    for shard in range(6)
                ]
            ).encode(),
            **{
                hub.format(
                    "naver-clova-ix/synthdog-en", f"data/train-0000{shard}-of-00084-{shard}a{shard}.parquet"
                ): b"p"
                for shard in range(5)
            },
        }
    )
    with serve(site):
        monkeypatch.setenv("HF_ENDPOINT", site.url)
        data = tmp_path / "data"
        recipe = load_recipe(REPO / "recipes/internvl_chat_v1_2.yaml", {"data_root": str(data)})
        fetch_all(recipe, InProcessRunner(), site.url)
    upstreams = recipe_upstreams(recipe)
    listing = "/api/datasets/naver-clova-ix/synthdog-en/tree/main"
    fetched = sorted(path for path, _ in site.requests if path != listing)
    assert fetched == sorted(set(site.files) - {listing})  # each file once; the listing once per glob
    assert {u.name: u.missing(data) for u in upstreams if u.public} == {
        u.name: [] for u in upstreams if u.public
    }
    assert all(u.missing(data) for u in upstreams if not u.public) and len(upstreams) == 19
    assert (data / "ai2d/images/0.png").exists() and (
        data / "llava/llava_pretrain/images/00000/000000010.jpg"
    ).exists()
    assert (data / "web-celebrity/images/1.jpg").exists() and (data / "dvqa/images/bar_train_0.png").exists()


def test_an_upstream_placed_by_hand_is_not_downloaded(tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (tmp_path / "data/coco/train2017").mkdir(parents=True)
    (tmp_path / "data/coco/train2017/1.jpg").write_bytes(b"mine")
    with serve(Site()) as site:
        served_manifests(manifests, site.url, ["coco_train2017"])
        recipe = _upstream_recipe(tmp_path, manifests, {"mine": "[coco_train2017]"})
        assert fetch_all(recipe, InProcessRunner()) == {"mine": []}
    assert site.requests == []


def test_the_fetch_stage_reports_bytes_of_the_whole_and_logs_them_off_a_terminal(
    tmp_path, capsys, monkeypatch
):
    """Off a terminal (pytest captures stderr), progress is plain lines: with the interval at 0, one per
    finished download and a summary, counting bytes against the sizes the server gave."""
    monkeypatch.setattr("dataprep.progress.LOG_INTERVAL", 0.0)
    train2017 = zip_bytes({"train2017/000000000009.jpg": bytes(3000)})
    site = Site(files={"/images.cocodataset.org/zips/train2017.zip": train2017})
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    with serve(site):
        served_manifests(manifests, site.url, ["coco_train2017"])
        recipe = _upstream_recipe(tmp_path, manifests, {"llava_zh": "[coco_train2017]"})
        fetch_all(recipe, InProcessRunner(progress=None))
    lines = capsys.readouterr().err.splitlines()
    size = human_bytes(len(train2017))
    assert lines[0].startswith(f"[fetch] 1/1 units  {size} of {size}  ") and "B/s  ETA" in lines[0]
    assert lines[-1].startswith(f"[fetch] 1/1 units  {size} of {size}") and "done in" in lines[-1]


def test_the_driver_imports_the_http_and_hub_libraries_only_for_a_download_not_done(tmp_path):
    """The driver reads its access (the hub's token) and makes a request only when a download must
    run: fetching again what is done, a fresh process imports neither library."""
    with serve(Site(files={"/a.jsonl": b"{}\n"})) as site:
        _recipe(
            tmp_path,
            f"  - {{source: conversations, path: mine, file: a.jsonl, fetch: [{{url: '{site.url}/a.jsonl'}}]}}\n",
        )
        code = (
            "from pathlib import Path\n"
            "from dataprep.engine.downloads import fetch_all\n"
            "from dataprep.engine.runner import InProcessRunner\n"
            "from dataprep.recipe.load import load_recipe\n"
            f"fetch_all(load_recipe(Path({str(tmp_path / 'recipe.yaml')!r})), InProcessRunner())\n"
        )
        first, again = imported_by(code), imported_by(code)
    assert first == ["requests", "huggingface_hub"] and again == []
    assert site.requests == [("/a.jsonl", None)] and (tmp_path / "data/mine/a.jsonl").read_bytes() == b"{}\n"


def test_the_drivers_hub_mirror_and_token_travel_with_each_fetch_job(tmp_path, monkeypatch):
    """A Ray worker does not share the driver's environment: each job carries the driver's
    HF_ENDPOINT, mirror and HF_TOKEN, never the worker's own; the token is written nowhere."""
    token = "hf_driversToken0123456789"

    class Worker:  # runs each job as a worker would, with an environment of its own
        def run(self, stage, jobs, total, measure=None):
            monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # not the hub the driver named
            monkeypatch.setenv("DATAPREP_MIRROR", "http://127.0.0.1:9")  # nor its mirror
            monkeypatch.setenv("HF_TOKEN", "hf_workersOwnToken")
            return [job.run() for _, job in jobs]

    monkeypatch.setattr(downloads, "fetch", partial(fetch, retries=0))  # a wrong address fails at once
    hub_file = "hf://datasets/openbmb/llava_zh@main/llava_instruct_150k_zh.json"
    served = hub_served(hub_file, b"[]") | Served(
        {"/images.cocodataset.org/zips/train2017.zip": zip_bytes({"train2017/1.jpg": b"jpg"})}
    )
    recipe = _recipe(
        tmp_path, "  - {source: llava_zh, path: llava_zh, upstreams: [llava_zh, coco_train2017]}\n"
    )
    with serve(served.site()) as site:
        monkeypatch.setenv("HF_ENDPOINT", site.url)
        monkeypatch.setenv("HF_TOKEN", token)
        reports = fetch_all(recipe, Worker(), site.url)["llava_zh"]
    assert [report.url for report in reports] == [
        hub_file,
        "http://images.cocodataset.org/zips/train2017.zip",
    ]
    assert (tmp_path / "data/llava_zh/llava_instruct_150k_zh.json").read_bytes() == b"[]"
    assert (tmp_path / "data/coco/train2017/1.jpg").read_bytes() == b"jpg"
    assert (
        sorted(auth for path, auth in site.authorizations if "/resolve/" in path) == [f"Bearer {token}"] * 2
    )
    assert [auth for path, auth in site.authorizations if "/resolve/" not in path] == [None]  # the mirror
    written = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert written and not [p for p in written if token.encode() in p.read_bytes()]
    assert token not in repr(reports) and token not in repr(
        downloads.FetchJob("r", Download(url=hub_file), downloads.Access.here())
    )


def test_a_lock_records_the_hub_commit_and_fetches_from_it_after_the_branch_moved(tmp_path, monkeypatch):
    """`main` resolves to commit A; the lock records A. Once `main` moves on (other bytes, commit B), a
    fetch under the lock still gets A's file, from A, instead of refusing it."""
    a, b = "a" * 40, "b" * 40
    resolve = "/datasets/openbmb/llava_zh/resolve/{}/llava_instruct_150k_zh.json"
    site = Site(
        files={resolve.format("main"): b'[{"id": "1"}]', resolve.format(a): b'[{"id": "1"}]'},
        headers={resolve.format("main"): {"X-Repo-Commit": a}, resolve.format(a): {"X-Repo-Commit": a}},
    )
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    served_manifests(manifests, "http://unused", ["llava_zh"])
    recipe = _upstream_recipe(tmp_path, manifests, {"mine": "[llava_zh]"})
    with serve(site):
        monkeypatch.setenv("HF_ENDPOINT", site.url)
        (first,) = fetch_all(recipe, InProcessRunner())["mine"]
        lock = {first.url: locked_file(first.url, first.bytes, first.sha256, first.revision)}
        site.files[resolve.format("main")] = site.files[resolve.format(b)] = b'[{"id": "2"}]'
        site.headers[resolve.format("main")] = site.headers[resolve.format(b)] = {"X-Repo-Commit": b}
        fresh = load_recipe(recipe_path := tmp_path / "recipe.yaml", {"data_root": str(tmp_path / "fresh")})
        (again,) = fetch_all(fresh, InProcessRunner(), None, lock, str(recipe_path))["mine"]
    assert first.revision == a and lock[first.url].revision == a and lock[first.url].commit == a
    assert again.sha256 == first.sha256 and again.revision == a
    assert (tmp_path / "fresh/llava_zh/llava_instruct_150k_zh.json").read_bytes() == b'[{"id": "1"}]'
    assert site.heads == [resolve.format("main"), resolve.format(a)]  # the hub asked at the branch, then A
    assert [path for path, _ in site.requests] == [resolve.format(a)] * 2  # the bytes: from A each time
