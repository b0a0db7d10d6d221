"""The command line as a user meets it: exit codes, tables, verification."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

import dataprep
from dataprep.cli import main, make_parser
from dataprep.exit_status import MANUAL_MISSING, STRICT_WARNINGS
from dataprep.fixtures.tokenizer import write_tokenizer
from dataprep.sources import registry
from train_bridge.cli import make_parser as make_bridge_parser

from helpers.loopback_http import Site, serve
from helpers.served_upstreams import served_manifests, zip_bytes
from helpers.upstream import recipe_yaml, write_conversations

REPO = Path(__file__).resolve().parent.parent


def test_bad_recipe_exits_2_and_writes_nothing(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    out = tmp_path / "out"
    recipe.write_text(recipe_yaml("bad", tmp_path, out).replace("source: conversations", "source: typo"))
    assert main(["build", str(recipe), "--quiet"]) == 2
    assert "sources.0.source" in capsys.readouterr().err
    assert not out.exists()


def test_build_show_and_validate(ray_cluster, tmp_path, capsys):
    write_conversations(tmp_path / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("cli", tmp_path, tmp_path / "out") + "    expect: 5\n")
    assert main(["build", str(recipe), "--quiet"]) == 0
    manifest = tmp_path / "out" / "manifest.json"
    capsys.readouterr()
    assert main(["manifest", "show", str(manifest)]) == 0
    shown = capsys.readouterr().out
    assert "image_missing 1" in shown and "100.00%" in shown and "mine" in shown
    assert "expected counts: 1 not met\n  mine: 13 +8 against 5 expected" in shown
    assert "warnings (2):\n  mine: 13 samples in the mixture, 5 expected\n  mine: 32% of 19" in shown
    assert main(["build", str(recipe), "--quiet", "--strict"]) == STRICT_WARNINGS  # a re-run: nothing rebuilt
    assert "--strict: 2 warnings" in capsys.readouterr().err
    assert main(["manifest", "validate", str(manifest)]) == 0
    shard = next(Path(tmp_path / "out" / "shards").glob("*.tar"))
    shard.write_bytes(shard.read_bytes()[:-512] + b"\0" * 511 + b"\1")
    assert main(["manifest", "validate", str(manifest)]) == 1
    assert shard.name in capsys.readouterr().err


def test_sources_lists_adapters(capsys):
    assert main(["sources"]) == 0
    assert "conversations" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["manifest", "recipe", "upstream"])
def test_the_published_schemas_are_the_models_own(capsys, kind):
    assert main(["schema", kind]) == 0
    published = REPO / "docs" / "schemas" / f"{kind}.schema.json"
    assert capsys.readouterr().out == published.read_text(), (
        f"regenerate: dataprep schema {kind} > {published}"
    )


def test_manifests_and_recipes_validate_against_the_published_schemas(ray_cluster, tmp_path):
    write_conversations(tmp_path / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("cli", tmp_path, tmp_path / "out", extra="tokens: {tokenizer: tok.json}"))
    recipe.write_text(
        recipe.read_text().replace("tok.json", str(write_tokenizer(tmp_path / "t.json", ["a b"])))
    )
    assert main(["build", str(recipe), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    schemas = {
        kind: json.loads((REPO / "docs" / "schemas" / f"{kind}.schema.json").read_text())
        for kind in ("manifest", "recipe")
    }
    jsonschema.validate(manifest, schemas["manifest"])
    jsonschema.validate(yaml.safe_load(recipe.read_text()), schemas["recipe"])
    for reference in ("internvl_chat_v1_2.yaml", "internvl_chat_v1_2_converted.yaml"):
        jsonschema.validate(yaml.safe_load((REPO / "recipes" / reference).read_text()), schemas["recipe"])
    manifest["totals"]["samples"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, schemas["manifest"])


def test_fetch_downloads_and_reports_each_file(ray_cluster, tmp_path, capsys):
    site = Site(files={"/a.jsonl": b'{"id": 1}\n', "/b.jsonl": b'{"id": 2}\n'})
    recipe = tmp_path / "r.yaml"
    with serve(site):
        fetch = f'    fetch:\n      - url: "{site.url}/a.jsonl"\n      - url: "{site.url}/b.jsonl"\n'
        recipe.write_text(recipe_yaml("f", tmp_path / "root", tmp_path / "out", extra_sources=fetch))
        assert main(["fetch", str(recipe), "--quiet"]) == 0
        table = capsys.readouterr().out
        assert (tmp_path / "root/mine/b.jsonl").read_bytes() == b'{"id": 2}\n'
        recipe.write_text(recipe.read_text().replace("/b.jsonl", "/gone.jsonl"))
        assert main(["fetch", str(recipe), "--quiet"]) == 1
    assert table.count("unpinned: add `sha256` to pin") == 2 and "a.jsonl" in table
    assert "HTTP 404" in capsys.readouterr().err and not (tmp_path / "out").exists()


def _coco_and_sam(tmp_path: Path, site: Site, train2017: bytes) -> Path:
    """A recipe naming the project's COCO manifest (its URL on `site`) and its manual sam one."""
    site.files["/images.cocodataset.org/zips/train2017.zip"] = train2017
    manifests = served_manifests(tmp_path / "manifests", site.url, ["coco_train2017", "sam"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: r\ndata_root: {tmp_path / 'data'}\nmanifests: {manifests}\noutput: {{dir: {tmp_path / 'out'}}}\n"
        "sources:\n  - {source: conversations, path: mine, file: a.jsonl, upstreams: [coco_train2017, sam]}\n"
    )
    return recipe


def test_fetch_ends_with_the_manual_checklist_and_exits_3_until_they_are_placed(
    ray_cluster, tmp_path, capsys
):
    with serve(Site()) as site:
        recipe = _coco_and_sam(tmp_path, site, zip_bytes({"train2017/1.jpg": b"one"}))
        assert main(["plan", str(recipe), "--no-fetch"]) == 0  # nothing downloaded
        table = capsys.readouterr().out
        assert site.requests == []
        assert main(["fetch", str(recipe), "--quiet"]) == MANUAL_MISSING
        missing = capsys.readouterr().out
        assert main(["plan", str(recipe), "--quiet"]) == 1  # fetches, then stops: mine/a.jsonl is missing
        planned = capsys.readouterr()
        (tmp_path / "data/sam/images").mkdir(parents=True)
        (tmp_path / "data/sam/images/a.jpg").write_bytes(b"art")
        assert main(["fetch", str(recipe), "--quiet"]) == 0
        present = capsys.readouterr().out
    assert site.requests == [("/images.cocodataset.org/zips/train2017.zip", None)]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:4]}
    assert (
        rows["coco_train2017"][1:4] == ["images", "public", "~18.0"]
        and rows["coco_train2017"][-1] == "missing"
    )
    assert rows["sam"][2] == "manual" and "1 public upstreams (~18.0 GB stated), 1 manual" in table
    assert (tmp_path / "data/coco/train2017/1.jpg").read_bytes() == b"one"
    assert "manual upstreams: 1 of 1 missing" in missing
    assert f"[ ] sam: missing images in {tmp_path / 'data/sam'}" in missing
    assert "file: sa_000000.tar … sa_000050.tar" in missing
    assert "required inputs are missing" in planned.err and "[ ] sam: missing images" in planned.out
    assert f"[x] sam: present in {tmp_path / 'data/sam'}" in present and "0 of 1 missing" in present


def test_a_lock_pins_every_download_and_refuses_a_changed_file(ray_cluster, tmp_path, capsys):
    (tmp_path / "data/sam/images").mkdir(parents=True)
    (tmp_path / "data/sam/images/a.jpg").write_bytes(b"art")
    first = zip_bytes({"train2017/1.jpg": b"one"})
    with serve(Site()) as site:
        recipe = _coco_and_sam(tmp_path, site, first)
        assert main(["fetch", str(recipe), "--quiet", "--lock"]) == 0
        lock = json.loads((tmp_path / "r.lock.json").read_text())
        assert main(["fetch", str(recipe), "--quiet"]) == 0  # unchanged: nothing transferred
        assert len(site.requests) == 1
        site.files["/images.cocodataset.org/zips/train2017.zip"] = zip_bytes({"train2017/1.jpg": b"changed"})
        assert main(["fetch", str(recipe), "--quiet", "--data-root", str(tmp_path / "fresh")]) == 1
        captured = capsys.readouterr()
        refused, checklist = captured.err, captured.out
        assert main(["fetch", str(recipe), "--quiet"]) == 0  # the locked file in place is kept
    assert lock == {
        "files": [
            {
                "revision": None,
                "sha256": hashlib.sha256(first).hexdigest(),
                "size": len(first),
                "url": f"{site.url}/images.cocodataset.org/zips/train2017.zip",
            }
        ]
    }
    assert f"{site.url}/images.cocodataset.org/zips/train2017.zip: sha256" in refused
    assert f"does not match the pinned {hashlib.sha256(first).hexdigest()}" in refused
    assert f"pinned by {tmp_path / 'r.lock.json'}" in refused
    assert f"[ ] sam: missing images in {tmp_path / 'fresh/sam'}" in checklist  # still listed
    assert not (tmp_path / "fresh/coco/train2017").exists()
    assert (tmp_path / "data/coco/train2017/1.jpg").read_bytes() == b"one"


def test_inspect_and_diff_two_builds(ray_cluster, tmp_path, capsys):
    write_conversations(tmp_path / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("cli", tmp_path, tmp_path / "a"))
    assert main(["build", str(recipe), "--quiet"]) == 0
    assert main(["build", str(recipe), "--quiet", "--out", str(tmp_path / "b")]) == 0
    changed = (
        recipe.read_text()
        .replace("seed: 7", "seed: 8")
        .replace("max_pixels: 4000000", "max_pixels: 4000000, max_side: 64")
    )
    recipe.write_text(changed + "    take: 5\n    expect: 5\n    image_placement: front\n")
    assert main(["build", str(recipe), "--quiet", "--out", str(tmp_path / "c")]) == 0
    a, b, c = (str(tmp_path / name / "manifest.json") for name in "abc")
    capsys.readouterr()

    assert main(["manifest", "diff", a, b]) == 0
    assert "same content" in capsys.readouterr().out
    assert main(["manifest", "diff", a, c]) == 1
    changes = capsys.readouterr().out
    assert "seed: 7 → 8" in changes and "recipe keys changed: image, seed, sources" in changes
    assert "image.max_side: None → 64" in changes
    assert "source mine: take all → 5" in changes and "source mine: in_mixture 13 → 5" in changes
    assert (
        "source mine: expect None → 5" in changes and "source mine: image_placement None → front" in changes
    )
    assert "0 identical" in changes
    assert "reader files changed: README.md, wids.json" in changes  # the card counts 5, wids its shards

    assert main(["inspect", a, "-n", "2", "--images", str(tmp_path / "seen")]) == 0
    shown = capsys.readouterr().out
    assert shown.count("source=mine") == 2 and "human: " in shown and "gpt: " in shown
    keys = [line.split()[0] for line in shown.splitlines() if "source=mine" in line]
    saved = sorted(path.name.split(".")[0] for path in (tmp_path / "seen").iterdir())
    assert set(saved) <= set(keys) and saved
    assert main(["inspect", a, "--key", keys[1], "-n", "5"]) == 0
    assert capsys.readouterr().out.count("source=mine") == 1
    assert main(["inspect", a, "--source", "nobody"]) == 1
    assert "no sample matches (sources: mine)" in capsys.readouterr().err


def test_show_and_diff_token_statistics(ray_cluster, tmp_path, capsys):
    write_conversations(tmp_path / "mine")
    tokenizer = write_tokenizer(tmp_path / "tokenizer.json", ["What is in picture 1?", "Shapes number 1."])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("cli", tmp_path, tmp_path / "a"))
    assert main(["build", str(recipe), "--quiet"]) == 0
    extra = f"tokens: {{tokenizer: {tokenizer}, image_tokens: 256}}"
    recipe.write_text(recipe_yaml("cli", tmp_path, tmp_path / "b", extra=extra))
    assert main(["build", str(recipe), "--quiet"]) == 0
    a, b = (str(tmp_path / name / "manifest.json") for name in "ab")
    capsys.readouterr()

    assert main(["manifest", "show", b]) == 0
    shown = capsys.readouterr().out
    assert "tokens per sample (tokenizer " in shown and "256 per image" in shown
    token_rows = shown.split("tokens per sample")[1].splitlines()
    assert any(row.split()[:2] == ["mine", "13"] for row in token_rows)
    assert main(["manifest", "diff", a, b]) == 1
    changes = capsys.readouterr().out
    assert "token statistics: none → " in changes and "tokenizer " in changes
    assert "shards: 4 → 4, 4 identical" in changes  # the same shards, only counted
    assert "recipe keys changed: tokens" in changes
    assert main(["manifest", "validate", b]) == 0  # the token sidecars are the manifest's own
    sidecar = sorted((tmp_path / "b" / "shards").glob("*.tokens.json"))[0]
    sidecar.write_bytes(sidecar.read_bytes().replace(b"}}", b',"x":1}}'))
    capsys.readouterr()
    assert main(["manifest", "validate", b]) == 1
    result = capsys.readouterr()
    assert f"shards/{sidecar.name}: missing, or its sha256 differs" in result.err
    assert "3 of 4 shards verified" in result.out


def test_validate_counts_shards_and_checks_rejects_and_bad_files_exit_cleanly(ray_cluster, tmp_path, capsys):
    write_conversations(tmp_path / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("cli", tmp_path, tmp_path / "out"))
    assert main(["build", str(recipe), "--quiet"]) == 0
    manifest = tmp_path / "out" / "manifest.json"
    capsys.readouterr()
    edited = tmp_path / "out" / "edited.json"
    edited.write_text(manifest.read_text().replace('"seed": 7', '"seed": 8'))
    assert main(["manifest", "validate", str(edited)]) == 1
    result = capsys.readouterr()
    assert "4 of 4 shards verified; problems found" in result.out
    assert "manifest content hash does not match" in result.err
    rejects = tmp_path / "out" / "rejects.jsonl"
    rejects.write_text(rejects.read_text() + '{"source": "mine", "id": "made-up"}\n')
    index = next((tmp_path / "out" / "shards").glob("*.idx.json"))
    index.write_bytes(index.read_bytes().replace(b"[[", b"[ ["))
    assert main(["manifest", "validate", str(manifest)]) == 1
    result = capsys.readouterr()
    assert "rejects.jsonl: missing, or its sha256 differs" in result.err
    assert f"shards/{index.name}: missing, or its sha256 differs" in result.err
    assert "3 of 4 shards verified" in result.out
    index.write_bytes(index.read_bytes().replace(b"[ [", b"[["))
    rejects.write_text("".join(rejects.read_text().splitlines(keepends=True)[:-1]))
    first = sorted((tmp_path / "out" / "shards").glob("*.tar"))[0]
    shutil.copy(first, first.with_name("cli-000099.tar"))  # a stray copy a `*.tar` reader would take
    assert main(["manifest", "validate", str(manifest)]) == 1
    result = capsys.readouterr()
    assert (
        result.err == "shards/cli-000099.tar: not in the manifest\n"
        and "4 of 4 shards verified" in result.out
    )
    first.with_name("cli-000099.tar").unlink()
    assert main(["manifest", "validate", str(manifest)]) == 0
    capsys.readouterr()

    (tmp_path / "empty.json").write_text("{}")
    assert main(["manifest", "show", str(tmp_path / "empty.json")]) == 2
    assert "is not a dataprep manifest" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "absent.json")]) == 2
    assert "cannot read manifest" in capsys.readouterr().err
    next((tmp_path / "out" / "shards").glob("*.tar")).unlink()
    assert main(["inspect", str(manifest), "-n", "100"]) == 1
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize("flag", ["--limit", "--workers"])
def test_counts_below_one_are_usage_errors(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as stopped:
        main(["build", str(tmp_path / "r.yaml"), flag, "0"])
    assert stopped.value.code == 2 and "must be at least 1, not 0" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["build", "fetch", "plan"])
def test_local_processes_joining_a_ray_cluster_is_a_usage_error_naming_both(tmp_path, capsys, command):
    with pytest.raises(SystemExit) as stopped:
        main([command, str(tmp_path / "r.yaml"), "--executor", "processes", "--ray-address", "auto"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and "--executor processes" in error and "--ray-address" in error


def test_reproduce_rebuilds_from_the_manifest_alone_and_names_what_differs(ray_cluster, tmp_path, capsys):
    write_conversations(tmp_path / "data" / "mine")
    tokenizer = write_tokenizer(tmp_path / "tokenizer.json", ["What is in picture 1?", "Shapes number 1."])
    recipe = tmp_path / "r.yaml"
    extra = f"tokens: {{tokenizer: {tokenizer}, image_tokens: 16}}"
    recipe.write_text(recipe_yaml("cli", tmp_path / "data", tmp_path / "a", extra=extra))
    assert main(["build", str(recipe), "--quiet"]) == 0
    elsewhere = tmp_path / "copied"  # the same upstream files on another machine
    shutil.copytree(tmp_path / "data", elsewhere)
    recipe.unlink()  # only the manifest is left
    manifest = str(tmp_path / "a" / "manifest.json")
    capsys.readouterr()

    def reproduce(out: str, *extra: str) -> int:
        args = ["reproduce", manifest, "--data-root", str(elsewhere), "--out", str(tmp_path / out)]
        return main([*args, "--quiet", *extra])

    assert reproduce("b") == 2
    assert "--tokenizer" in capsys.readouterr().err
    assert reproduce("b", "--tokenizer", str(tokenizer)) == 0
    assert "reproduced: same content" in capsys.readouterr().out
    annotation = elsewhere / "mine" / "train.jsonl"
    annotation.write_text("".join(annotation.read_text().splitlines(keepends=True)[1:]))
    assert reproduce("c", "--tokenizer", str(tokenizer)) == 1
    changes = capsys.readouterr().out
    assert changes.startswith("not reproduced:") and "input train.jsonl changed" in changes
    assert "source mine: read " in changes


def test_a_trial_build_is_reproduced_as_the_same_trial(ray_cluster, tmp_path, capsys):
    write_conversations(tmp_path / "data" / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("cli", tmp_path / "data", tmp_path / "a"))
    assert main(["build", str(recipe), "--quiet", "--limit", "4"]) == 0
    manifest = tmp_path / "a" / "manifest.json"
    args = ["reproduce", str(manifest), "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "b")]
    assert main([*args, "--quiet"]) == 0
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["limit"] == 4


def test_discarding_parts_frees_the_copy_and_a_rebuild_gives_the_same_bytes(ray_cluster, tmp_path, capsys):
    write_conversations(tmp_path / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("cli", tmp_path, tmp_path / "out"))
    assert main(["build", str(recipe), "--quiet", "--discard-parts"]) == 0
    out = tmp_path / "out"
    assert not (out / ".work" / "parts").exists()
    first = json.loads((out / "manifest.json").read_text())
    shards = sorted((out / "shards").glob("*.tar"))
    mtimes = [path.stat().st_mtime_ns for path in shards]
    assert main(["build", str(recipe), "--quiet"]) == 0  # re-normalizes; the shards are kept
    assert json.loads((out / "manifest.json").read_text())["content_sha256"] == first["content_sha256"]
    assert [path.stat().st_mtime_ns for path in shards] == mtimes
    assert (out / ".work" / "parts").exists()


def test_a_build_that_fetched_its_files_is_reproduced(ray_cluster, tmp_path, capsys):
    write_conversations(tmp_path / "published" / "mine")
    annotations = (tmp_path / "published" / "mine" / "train.jsonl").read_bytes()
    recipe = tmp_path / "r.yaml"
    with serve(Site(files={"/mine/train.jsonl": annotations})) as site:
        fetch = f'    fetch:\n      - url: "{site.url}/mine/train.jsonl"\n'
        shutil.copytree(tmp_path / "published" / "mine" / "images", tmp_path / "data" / "mine" / "images")
        recipe.write_text(recipe_yaml("cli", tmp_path / "data", tmp_path / "a", extra_sources=fetch))
        assert main(["build", str(recipe), "--quiet"]) == 0
    manifest = tmp_path / "a" / "manifest.json"
    assert json.loads(manifest.read_text())["sources"][0]["downloads"]  # provenance is recorded
    args = ["reproduce", str(manifest), "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "b")]
    assert main([*args, "--quiet"]) == 0
    assert "reproduced: same content" in capsys.readouterr().out


def test_diff_and_reproduce_refuse_a_manifest_edited_by_hand(ray_cluster, tmp_path, capsys):
    write_conversations(tmp_path / "data" / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("cli", tmp_path / "data", tmp_path / "a"))
    assert main(["build", str(recipe), "--quiet"]) == 0
    manifest = tmp_path / "a" / "manifest.json"
    edited = tmp_path / "edited.json"
    document = json.loads(manifest.read_text())
    document["sources"][0]["kept"] = 999  # the recorded hash is left as it was
    edited.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["manifest", "diff", str(manifest), str(edited)]) == 2
    assert "edited.json: its content_sha256 does not match its content" in capsys.readouterr().err
    args = ["reproduce", str(edited), "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "b")]
    assert main([*args, "--quiet"]) == 2 and not (tmp_path / "b").exists()
    del document["content_sha256"]
    edited.write_text(json.dumps(document))
    assert main(["manifest", "diff", str(edited), str(edited)]) == 2


def test_inspect_names_a_damaged_shard_and_needs_a_positive_count(ray_cluster, tmp_path, capsys):
    write_conversations(tmp_path / "data" / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("cli", tmp_path / "data", tmp_path / "a"))
    assert main(["build", str(recipe), "--quiet"]) == 0
    manifest = str(tmp_path / "a" / "manifest.json")
    with pytest.raises(SystemExit) as stopped:
        main(["inspect", manifest, "-n", "0"])
    assert stopped.value.code == 2
    first = sorted((tmp_path / "a" / "shards").glob("*.tar"))[0]
    first.write_bytes(first.read_bytes()[:5000])
    capsys.readouterr()
    assert main(["inspect", manifest, "-n", "100"]) == 1
    err = capsys.readouterr().err
    assert f"{first}: not a readable shard" in err and "manifest validate" in err and err.count("\n") == 1


def test_a_bad_ray_address_and_a_closed_pipe_end_without_a_traceback(tmp_path):
    write_conversations(tmp_path / "data" / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("cli", tmp_path / "data", tmp_path / "a"))
    command = [sys.executable, "-m", "dataprep.cli"]
    joined = subprocess.run(
        [*command, "plan", str(recipe), "--ray-address", "bogus"], capture_output=True, text=True, timeout=120
    )
    assert joined.returncode == 1 and "Traceback" not in joined.stderr
    assert "cannot join the Ray cluster at 'bogus'" in joined.stderr
    piped = subprocess.Popen([*command, "schema", "recipe"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    piped.stdout.close()  # as `| head` does once it has what it wants
    assert piped.wait(timeout=120) == 1 and piped.stderr.read() == b""


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _subparsers(child)


@pytest.mark.parametrize("make", [make_parser, make_bridge_parser])
def test_every_argument_of_both_commands_has_help(make):
    missing = [
        f"{prog}: {action.dest}"
        for prog, parser in _subparsers(make())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("module", "prog"), [("dataprep.cli", "dataprep"), ("train_bridge.cli", "train-bridge")]
)
def test_both_commands_say_their_version(module, prog):
    done = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"{prog} {dataprep.__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["build", "--help"], ["build"], ["manifest", "show", "--help"]])
def test_help_and_usage_errors_start_no_heavy_imports(argv):
    probe = (
        "import sys\n"
        "from dataprep.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('ray', 'pyarrow', 'PIL', 'numpy', 'torch', 'datasets', 'huggingface_hub', 'jinja2',\n"
        "         'pydantic', 'importlib.metadata')  # a build starts its forkserver after these\n"
        "print(sorted(name for name in heavy if name in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_json_outputs_parse_and_match_the_manifest(ray_cluster, tmp_path, capsys):
    write_conversations(tmp_path / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("cli", tmp_path, tmp_path / "out") + "    expect: 5\n")
    assert main(["plan", str(recipe), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert main(["build", str(recipe), "--quiet"]) == 0
    capsys.readouterr()
    manifest_path = tmp_path / "out" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    [source] = manifest["sources"]
    assert [(row["source"], row["will_produce"], row["kept"]) for row in plan["sources"]] == [
        (source["name"], source["in_mixture"], source["kept"])
    ]
    assert plan["samples"] == manifest["totals"]["samples"] and plan["shards"] == manifest["totals"]["shards"]

    assert main(["manifest", "show", str(manifest_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["manifest"] == manifest
    assert shown["warnings"][0] == f"{source['name']}: 13 samples in the mixture, 5 expected"
    assert main(["manifest", "validate", str(manifest_path), "--json"]) == 0
    validated = json.loads(capsys.readouterr().out)
    assert validated == {
        "ok": True,
        "shards": len(manifest["shards"]),
        "verified": len(manifest["shards"]),
        "problems": [],
    }
    assert main(["manifest", "diff", str(manifest_path), str(manifest_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["same"] is True
    assert main(["sources", "--json"]) == 0
    assert {row["name"] for row in json.loads(capsys.readouterr().out)} == set(registry())


def test_off_a_terminal_a_build_logs_progress_lines_and_the_summary(tmp_path):
    write_conversations(tmp_path / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_yaml("logs", tmp_path, tmp_path / "out"))
    with open(tmp_path / "stderr.log", "w") as stderr, open(tmp_path / "stdout.log", "w") as stdout:
        subprocess.run(
            [sys.executable, "-m", "dataprep.cli", "build", str(recipe), "--log-interval", "0.01"],
            stdout=stdout,
            stderr=stderr,
            check=True,
            env={**os.environ, "RAY_ADDRESS": ""},
        )
    logged = (tmp_path / "stderr.log").read_text()
    assert "\x1b[" not in logged  # plain lines, no terminal redrawing
    normalize = [line for line in logged.splitlines() if line.startswith("[normalize]")]
    assert normalize and all(" units  " in line and "/s" in line and "ETA" in line for line in normalize)
    assert normalize[-1].endswith(" s") and "done in" in normalize[-1]
    assert any(line.startswith("[write]") and "done in" in line for line in logged.splitlines())
    assert "total" in (tmp_path / "stdout.log").read_text()  # the summary table


def _build_args(*extra: str) -> argparse.Namespace:
    return make_parser().parse_args(["build", *extra])


def test_only_a_first_build_into_a_local_folder_on_local_processes_starts_its_forkserver_early(
    tmp_path, monkeypatch
):
    from dataprep.cli import _starts_workers_early

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"output": {"dir": "from_recipe"}}))
    assert _starts_workers_early(_build_args(str(recipe)))
    assert not _starts_workers_early(_build_args(str(recipe), "--out", "s3://bucket/prefix"))  # a store
    (tmp_path / "from_recipe").mkdir()
    (tmp_path / "from_recipe" / "manifest.json").write_text("{}")  # a finished build: a re-run
    assert not _starts_workers_early(_build_args(str(recipe)))
    assert _starts_workers_early(_build_args(str(recipe), "--out", str(tmp_path / "elsewhere")))
    assert not _starts_workers_early(_build_args(str(recipe), "--out", str(tmp_path / "from_recipe")))
    assert not _starts_workers_early(_build_args(str(recipe), "--out", f"file://{tmp_path / 'from_recipe'}"))
    assert not _starts_workers_early(_build_args(str(tmp_path / "other.yaml"), "--executor", "ray"))
    assert not _starts_workers_early(make_parser().parse_args(["plan", str(tmp_path / "other.yaml")]))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a Ray job submission: Ray runs the jobs
    assert not _starts_workers_early(_build_args(str(tmp_path / "other.yaml")))
    monkeypatch.delenv("RAY_ADDRESS")
    recipe.write_text("output: [unclosed")  # the build reports it; the forkserver may start
    assert _starts_workers_early(_build_args(str(recipe)))
    assert _starts_workers_early(_build_args(str(tmp_path / "missing.yaml")))


EARLY = """
import multiprocessing.forkserver, os
from dataprep.engine.process_runner import ProcessRunner, start_forkserver
start_forkserver()
server = multiprocessing.forkserver._forkserver._forkserver_pid
runner = ProcessRunner(workers=2, progress=False)
try:
    print(server, set(runner.run("parents", [("a", ParentJob()), ("b", ParentJob())], 2)))
finally:
    runner.stop()
"""


def test_the_pools_fork_their_workers_from_the_forkserver_started_early():
    script = "from helpers.jobs import ParentJob\n" + EARLY
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO / "tests", capture_output=True, text=True, check=True
    )
    server, parents = run.stdout.split(maxsplit=1)
    assert parents.strip() == "{" + server + "}"


def test_the_cli_keeps_numpys_blas_to_one_thread_unless_told_otherwise(monkeypatch, capsys):
    """Workers inherit it: one OpenBLAS thread per process, not one per core spinning at start-up."""
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert main(["sources"]) == 0
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    assert main(["sources"]) == 0
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
