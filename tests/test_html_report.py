"""`dataprep report`: the demo build's page, opened in headless Chromium, shows every source with no
network and no console errors; its statistics and grid come from the shards themselves."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from dataprep.cli import main
from dataprep.contract.manifest import Manifest, load_manifest
from dataprep.contract.shards import iter_samples
from dataprep.engine.build import build
from dataprep.engine.runner import InProcessRunner
from dataprep.engine.settings import BuildSettings
from dataprep.fixtures import generate_all
from dataprep.fixtures.tokenizer import demo_tokenizer
from dataprep.html_report import collect_samples, grid_samples, render_report
from dataprep.recipe.load import load_recipe

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package; `make test` installs it
CHROMIUM_FLAGS = [  # a closed network: no background connections (see the machine notes)
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo build (in process), its manifest's path."""
    root = tmp_path_factory.mktemp("report")
    generate_all(root / "data")
    overrides = {
        "data_root": str(root / "data"),
        "tokens.tokenizer": str(demo_tokenizer(root / "data")),
        "output.dir": str(root / "out"),
    }
    recipe = load_recipe(REPO / "recipes" / "demo.yaml", overrides)
    build(recipe, BuildSettings(out=root / "out", progress=False), InProcessRunner())
    return root / "out" / "manifest.json"


def test_the_statistics_count_every_sample_of_every_source_once(demo):
    manifest = load_manifest(demo)
    stats = collect_samples(manifest, demo, grid=4)
    assert {name: source.samples for name, source in stats.items()} == {
        source.name: source.in_mixture for source in manifest.sources
    }
    samples = {key: sample for shard in manifest.shard_paths(demo) for key, sample, _ in iter_samples(shard)}
    for name, source in stats.items():
        histograms = source.histograms()
        assert sum(count for _, count, _ in histograms["turns per sample"]) == source.samples
        assert (
            sum(count for _, count, _ in histograms["tokens per sample"]) == source.samples
        )  # demo counts tokens
        shown = grid_samples(source)
        assert len(shown) == min(4, source.samples)
        for sample in shown:  # each grid sample is the shard's, whole
            held = samples[sample.key]
            assert (held.source, held.id) == (name, sample.id)
            assert sample.turns == [(turn.role, turn.value) for turn in held.conversations]
            assert len(sample.thumbnails) == len(held.images)
            assert all(thumbnail.startswith("data:image/jpeg;base64,") for thumbnail in sample.thumbnails)
    assert [s.key for s in grid_samples(collect_samples(manifest, demo, grid=4)["ai2d"])] == [
        s.key for s in grid_samples(stats["ai2d"])
    ]  # the same grid every time


def test_the_page_opens_offline_in_chromium_and_shows_every_source(demo, tmp_path):
    page_file = tmp_path / "report.html"
    assert main(["report", str(demo), "--out", str(page_file)]) == 0
    manifest = load_manifest(demo)
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_file.as_uri())
        page.wait_for_load_state("networkidle")
        text = page.inner_text("body")
        page.locator("details").first.click()  # a sample's conversation opens
        opened = page.locator("details[open] .turn").first.inner_text()
        screenshot = page.screenshot(full_page=True)
        browser.close()
    assert errors == []
    assert requests == [page_file.as_uri()]  # thumbnails are data: URIs, nothing else is fetched
    for source in manifest.sources:
        assert source.name in text
        assert f"{source.name} · {source.in_mixture:,} samples in the mixture" in text
    assert f"samples {manifest.totals.samples:,}" in text
    stats = collect_samples(manifest, demo, grid=12)
    first_shown = grid_samples(stats[min(stats)])[0]  # sections are in name order
    role, value = first_shown.turns[0]
    assert opened.split() == f"{role}: {value}".split()  # the full text of a sample's turn
    image = Image.open(io.BytesIO(screenshot)).convert("L")
    low, high = image.getextrema()
    assert high - low > 100 and len(image.getcolors(256)) > 20  # not a blank page


def test_a_report_of_two_builds_shows_what_changed(demo, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(demo.parent, old)
    manifest = json.loads((old / "manifest.json").read_bytes())
    manifest["sources"][0]["in_mixture"] += 5  # as an earlier build with more of the first source
    data = {key: value for key, value in manifest.items() if key != "content_sha256"}
    rewritten = Manifest.model_validate(data)
    rewritten.content_sha256 = rewritten.compute_content_sha256()
    (old / "manifest.json").write_text(rewritten.model_dump_json())
    page = render_report(demo, old / "manifest.json", grid=2)
    name = manifest["sources"][0]["name"]
    before = manifest["sources"][0]["in_mixture"]
    assert f"Changes since {old / 'manifest.json'}" in page
    assert f'<td>{name}</td><td class="n">{before}</td><td class="n">{before - 5}</td>' in page
    assert '<td class="n">-5</td>' in page
