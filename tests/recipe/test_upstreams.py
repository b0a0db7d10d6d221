"""Upstream manifests: the project's own all load and name only the hosts the publishers use; a bad
manifest is named by file, line and field; recipes may name only upstreams that have a manifest."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dataprep.recipe.load import RecipeError, load_recipe
from dataprep.recipe.model import drive_parts
from dataprep.recipe.upstreams import MANIFESTS, UpstreamError, load_catalogue, load_upstream

REPO = Path(__file__).resolve().parents[2]
# every host downloads.md (the publishers' facts) names; hf:// goes to the hub
PUBLISHED_HOSTS = {
    "ai2-public-datasets.s3.amazonaws.com",
    "s3-us-east-2.amazonaws.com",
    "datasets.cvc.uab.es",
    "images.cocodataset.org",
    "downloads.cs.stanford.edu",
    "dl.fbaipublicfiles.com",
    "cs.stanford.edu",
}
V1_2_UPSTREAMS = {
    "sharegpt4v", "llava_zh", "chartqa", "ai2d", "docvqa", "dvqa", "geoqa_plus", "synthdog_en",
    "coco_train2017", "llava_pretrain", "gqa", "textvqa", "vg", "ocr_vqa", "sam", "share_textvqa",
    "web_celebrity", "web_landmark", "wikiart",
}  # fmt: skip
MANUAL = {"geoqa_plus", "ocr_vqa", "sam"}
DRIVE = {  # public Google Drive files: (folder, id, archive folder moved to `images`), ids from the publishers
    ("share_textvqa", "1f4v_3e1OJtyYqam1CEp6RenCNTU5_mG2", "data/share_textvqa/images"),
    ("web-celebrity", "1-SB71C3j1mVg0kDDXwj2IWGEoBoRUD-J", "data/web-celebrity/images"),
    ("web-landmark", "1JpJkN7ZMA50xAhMx9O-rVb5yLhfGm3_o", "data/web-landmark/images"),
    ("wikiart", "1FxB2Nw-vWUcTUSI_dBpPIykb-uGYoEqV", "data/wikiart/images"),
    ("dvqa", "1iKH2lTi1-QxtNUVRxTUWFvUvRHq6HAsZ", None),
    ("dvqa", "1VKYd3kaiCFziSsSv4SgQJ2T5m7jxuh5u", None),
}


def test_every_manifest_loads_and_names_only_published_hosts():
    catalogue = load_catalogue()
    assert MANIFESTS == REPO / "manifests" and len(catalogue) == len(list(MANIFESTS.glob("*.yaml")))
    assert V1_2_UPSTREAMS | {"internvl_chat_v1_2_sft_data", "internvl_geoqa_plus_images"} <= set(catalogue)
    assert {name for name, upstream in catalogue.items() if not upstream.public} == MANUAL
    drive = set()
    for upstream in catalogue.values():
        for file in upstream.files:
            if file.url.startswith("gdrive://"):
                moved = next(iter(file.members), None)
                drive.add((upstream.folder, drive_parts(file.url)[0], moved))
                assert file.unpack and moved in (None, f"data/{upstream.folder}/images")
                continue
            assert file.url.startswith("hf://") or urlsplit(file.url).hostname in PUBLISHED_HOSTS, file.url
    assert drive == DRIVE


def test_the_reference_recipe_names_every_upstream_of_the_mixture(tmp_path):
    recipe = load_recipe(REPO / "recipes" / "internvl_chat_v1_2.yaml", {"data_root": str(tmp_path)})
    named = {name for entry in recipe.sources for name in entry.upstreams}
    assert named == V1_2_UPSTREAMS
    assert all(entry.upstreams for entry in recipe.sources)
    assert "upstreams" not in recipe.content()["sources"][0]  # which files: a location, like `fetch`


GOOD = """\
name: mine
kind: images
title: Mine
page: https://example.org
licence: CC0
terms: none
folder: mine
files:
  - url: https://example.org/mine.zip
    size: 12 MB
    unpack: true
present: [images]
"""


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (GOOD.replace("12 MB", "12 megs"), ":10: files.0.size"),
        (GOOD.replace("kind: images", "kind: pictures"), ":2: kind"),
        (GOOD.replace("folder: mine", "folder: ../mine"), ":7: folder"),
        (GOOD.replace("present: [images]\n", ""), ":1: present"),
        (GOOD.replace("    unpack: true\n", "    members: {a: b}\n"), ":9: files.0"),
        (GOOD.replace("name: mine", "name: other"), ":1: name: must be the file's name"),
        (GOOD + "files: []\n", ":13: files: key given twice"),
        (GOOD.split("files:")[0] + "present: [images]\n", ":1: <manifest>: Value error, give `files`"),
        (
            GOOD.replace("https://example.org/mine.zip", "gdrive://1FxB2Nw-vWUcTUSI_dBpPIykb-uGYoEqV"),
            ":9: files.0",
        ),
        (GOOD.replace("https://example.org/mine.zip", "gdrive://short/mine.zip"), ":9: files.0"),
    ],
)
def test_a_bad_manifest_names_file_line_and_field(tmp_path, text, where):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(UpstreamError) as caught:
        load_upstream(path)
    assert f"{path}{where}" in str(caught.value)


def test_present_is_checked_by_globs_and_empty_folders_do_not_count(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        GOOD.replace("present: [images]", "present:\n  - images\n  - data/train-0000[0-1]-*.parquet")
    )
    upstream = load_upstream(path)
    assert upstream.missing(tmp_path) == ["images", "data/train-0000[0-1]-*.parquet"]
    (tmp_path / "mine/images").mkdir(parents=True)
    (tmp_path / "mine/data").mkdir()
    (tmp_path / "mine/data/train-00001-abc.parquet").write_bytes(b"x")
    assert upstream.missing(tmp_path) == ["images"]
    (tmp_path / "mine/images/a.jpg").write_bytes(b"x")
    assert upstream.missing(tmp_path) == []
    assert upstream.approx_bytes() == 12_000_000


def test_a_recipe_naming_an_unknown_upstream_names_the_field_and_line(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""name: r
data_root: {tmp_path / "nowhere"}
output: {{dir: {tmp_path / "out"}}}
sources:
  - source: conversations
    path: mine
    file: a.jsonl
    upstreams: [coco_train2017,
      coco_2017]
"""
    )
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe)
    assert f"{recipe}:9: sources.0.upstreams.1: unknown upstream 'coco_2017'" in str(caught.value)
    recipe.write_text(recipe.read_text().replace("coco_2017", "sam") + f"manifests: {tmp_path / 'none'}\n")
    with pytest.raises(RecipeError, match=r":10: manifests: .*none: is not a folder of upstream manifests"):
        load_recipe(recipe)
