"""Every entry's `fetch` downloads, from a loopback HTTP server."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections import Counter

import pytest

from dataprep.engine.runner import BuildError
from dataprep.fetch import download_key
from dataprep.recipe.model import Download

from helpers.builds import build_recipe
from helpers.loopback_http import Site, serve
from helpers.upstream import write_conversations


def test_sources_are_fetched_over_http_before_they_are_read(ray_cluster, tmp_path):
    published = tmp_path / "published"
    facts = write_conversations(published / "mine")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for image in sorted((published / "mine/images").iterdir()):
            bundle.write(image, f"images/{image.name}")
    annotations = (published / "mine/train.jsonl").read_bytes()
    site = Site(files={"/mine/train.jsonl": annotations, "/mine/images.zip": archive.getvalue()})
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
