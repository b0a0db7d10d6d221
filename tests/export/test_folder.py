"""The export folder: a file or a folder with others' files is refused in one line before anything
is written; an earlier export's folder (also one cut off half-way) is reused, its stale files gone;
a re-run that would write the same bytes rewrites no file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from dataprep.cli import main
from dataprep.contract.shards import iter_tar

from helpers.bridge_shards import rewrite_shard


def _files(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def _referenced_by_internvl(folder: Path) -> set[str]:
    """meta.json, export.json, the annotations and every image file a line names."""
    meta = json.loads((folder / "meta.json").read_text())
    files = {"meta.json", "export.json"}
    for entry in meta.values():
        files.add(entry["annotation"])
        for line in (folder / entry["annotation"]).read_text().splitlines():
            image = json.loads(line).get("image", [])
            files |= {entry["root"] + name for name in ([image] if isinstance(image, str) else image)}
    return files


KINDS = ["internvl", "llava", "llamafactory", "swift", "parquet"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_out_that_is_a_file_or_holds_other_files_is_refused_in_one_line(mixture, tmp_path, capsys, kind):
    manifest_path, _, _ = mixture
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    assert main(["export", kind, str(manifest_path), "--out", str(file)]) == 2
    err = capsys.readouterr().err
    assert err == f"dataprep export {kind}: error: --out {file} is a file, not a folder\n"
    assert file.read_text() == "mine"
    assert main(["export", kind, str(manifest_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and f"--out {tmp_path} holds 'notes.txt', which no dataprep export wrote" in err
    )
    assert _files(tmp_path) == {"notes.txt"}  # nothing written


def test_an_earlier_export_is_reused_and_its_stale_files_removed(mixture, tmp_path, capsys):
    manifest_path, _, _ = mixture
    out = tmp_path / "out"
    assert main(["export", "internvl", str(manifest_path), "--out", str(out)]) == 0
    current = _files(out)
    assert current == _referenced_by_internvl(out)
    assert main(["export", "internvl", str(manifest_path), "--out", str(out), "--trainer", "v1_2"]) == 0
    assert (
        _files(out) == _referenced_by_internvl(out) and len(_files(out)) == len(current) - 4
    )  # 2 × 2 images
    assert main(["export", "llava", str(manifest_path), "--out", str(out)]) == 0
    records = json.loads((out / "llava.json").read_text())
    assert _files(out) == {"llava.json", "export.json"} | {
        f"images/{r['image']}" for r in records if "image" in r
    }
    assert sorted(path.name for path in out.iterdir()) == ["export.json", "images", "llava.json"]
    capsys.readouterr()
    (out / "mine.txt").write_text("added by hand")
    assert main(["export", "llava", str(manifest_path), "--out", str(out)]) == 2
    assert "holds 'mine.txt', which no dataprep export wrote" in capsys.readouterr().err


def test_a_folder_an_export_was_cut_off_in_is_reused(mixture, tmp_path, capsys):
    manifest_path, _, _ = mixture
    build = tmp_path / "build"
    shutil.copytree(manifest_path.parent, build)
    copy = build / "manifest.json"
    original = copy.read_bytes()
    last = json.loads(original)["shards"][-1]["path"]
    saved = (build / last).read_bytes()
    members = [
        (name, b"{broken" if name.endswith(".json") else data) for name, data in iter_tar(build / last)
    ]
    rewrite_shard(copy, len(json.loads(original)["shards"]) - 1, members)
    out = tmp_path / "out"
    assert main(["export", "internvl", str(copy), "--out", str(out)]) == 1
    assert "sample 0 cannot be exported (JSONDecodeError" in capsys.readouterr().err
    assert json.loads((out / "export.json").read_text())["complete"] is False
    assert (out / "images").exists()  # cut off after the first shards
    assert not list(out.rglob("*.partial"))  # the annotations being written are gone
    (build / last).write_bytes(saved)
    copy.write_bytes(original)
    assert main(["export", "internvl", str(copy), "--out", str(out)]) == 0
    assert json.loads((out / "export.json").read_text())["complete"] is True
    assert _files(out) == _referenced_by_internvl(out)


@pytest.mark.parametrize("kind", KINDS)
def test_a_rerun_rewrites_no_file_and_a_changed_file_is_put_back(mixture, tmp_path, capsys, kind):
    manifest_path, _, _ = mixture
    out = tmp_path / "out"
    assert main(["export", kind, str(manifest_path), "--out", str(out)]) == 0
    first = capsys.readouterr().out
    stamps = {name: os.stat(out / name).st_mtime_ns for name in _files(out)}
    contents = {name: (out / name).read_bytes() for name in stamps}
    assert main(["export", kind, str(manifest_path), "--out", str(out)]) == 0
    assert capsys.readouterr().out == first
    assert {name: os.stat(out / name).st_mtime_ns for name in _files(out)} == stamps
    changed = sorted(name for name in stamps if name != "export.json")[-1]
    (out / changed).write_bytes(b"edited")
    assert main(["export", kind, str(manifest_path), "--out", str(out)]) == 0
    assert {name: (out / name).read_bytes() for name in _files(out)} == contents
