"""`train-bridge` command line: bad options and inputs end in one line and exit 2, before training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from train_bridge.cli import main


def sft(manifest: Path, tokenizer_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "sft",
        *("--manifest", str(manifest), "--model", "tiny", "--tokenizer", str(tokenizer_dir)),
        *("--out", str(out), "--image-size", "28", "--global-batch", "4", "--micro-batch", "1"),
        *("--num-workers", "0", "--resume", "none", "--max-steps", "1", "--no-gradient-checkpointing"),
        *extra,
    ]


@pytest.mark.parametrize(
    ("flag", "value", "low"),
    [
        ("--epochs", "0", 1),
        ("--image-size", "0", 1),
        ("--seed", "-1", 0),
        ("--max-steps", "-3", 0),
        ("--stop-after", "-2", 0),
        ("--num-workers", "-1", 0),
        ("--length-group", "-1", 0),
        ("--save-every", "-2", -1),
    ],
)
def test_out_of_range_numbers_are_usage_errors(
    tmp_path: Path, capsys, flag: str, value: str, low: int
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([*sft(tmp_path / "m.json", tmp_path, tmp_path / "run"), flag, value])
    assert stopped.value.code == 2
    assert f"argument {flag}: must be at least {low}, not {value}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing manifest", "no such file"),
        ("missing tokenizer", "--tokenizer: "),
        ("image size", "--image-size 27 must be a positive multiple of 28"),
        ("not a checkpoint", "is not a checkpoint folder"),
        ("parallel none", "would train 2 unsynchronised models"),
    ],
)
def test_bad_inputs_end_in_one_line(
    tmp_path: Path, manifest_path: Path, tokenizer_dir: Path, monkeypatch, capsys, case: str, message: str
) -> None:
    manifest, tokenizer, extra = manifest_path, tokenizer_dir, []
    if case == "missing manifest":
        manifest = tmp_path / "nowhere/manifest.json"
    elif case == "missing tokenizer":
        tokenizer = tmp_path / "typo"
    elif case == "image size":
        extra = ["--image-size", "27"]
    elif case == "not a checkpoint":
        (tmp_path / "empty").mkdir()
        extra = ["--resume", str(tmp_path / "empty")]
    else:
        monkeypatch.setenv("WORLD_SIZE", "2")
        extra = ["--parallel", "none"]
    assert main([*sft(manifest, tokenizer, tmp_path / "run", *extra)]) == 2
    err = capsys.readouterr().err
    assert message in err.lower() if case == "missing manifest" else message in err
    assert err.startswith("train-bridge sft: error: ") and err.count("\n") == 1  # no traceback
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize("where", ["../outside/mix-000000.tar", "absolute"])
@pytest.mark.parametrize("command", ["sft", "export-internvl"])
def test_a_manifest_cannot_lead_the_bridge_out_of_its_folder(
    tmp_path: Path, tokenizer_dir: Path, capsys, where: str, command: str
) -> None:
    from bridge_fixtures import build_shards

    manifest_path = build_shards(tmp_path / "mix", samples=4, per_shard=4)
    outside = tmp_path / "outside" / "mix-000000.tar"
    outside.parent.mkdir()
    shutil.copy(tmp_path / "mix" / "shards" / "mix-000000.tar", outside)
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"][0]["path"] = str(outside) if where == "absolute" else where
    manifest_path.write_text(json.dumps(manifest))
    args = ["--manifest", str(manifest_path), "--out", str(tmp_path / "run")]
    assert (
        main(sft(manifest_path, tokenizer_dir, tmp_path / "run") if command == "sft" else [command, *args])
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "shards.0.path: Value error" in err and "inside the manifest's folder" in err
    )
