"""`train-bridge` command line: `sft`'s flags come from TrainConfig and stay as users know them; bad
options and inputs end in one line and exit 2, before training."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import pytest

from train_bridge.cli import main, make_parser
from train_bridge.config import TrainConfig


def sft(manifest: Path, tokenizer_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "sft",
        *("--manifest", str(manifest), "--model", "tiny", "--tokenizer", str(tokenizer_dir)),
        *("--out", str(out), "--image-size", "28", "--global-batch", "4", "--micro-batch", "1"),
        *("--num-workers", "0", "--resume", "none", "--max-steps", "1", "--no-gradient-checkpointing"),
        *extra,
    ]


def sft_flags() -> list[argparse.Action]:
    (sub,) = (a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices["sft"]._actions if a.dest != "help"]


def test_sft_flags_are_the_config_fields_and_stay_as_users_know_them() -> None:
    """Names, --no- forms, required-ness, choices and defaults; the bounds are checked below."""
    flags = {" ".join(a.option_strings): (a.required, a.choices, a.default) for a in sft_flags()}
    assert flags == {
        "--manifest": (True, None, None),
        "--model": (True, None, None),
        "--tokenizer": (True, None, None),
        "--out": (True, None, None),
        "--system": (False, None, "Answer the questions."),
        "--max-length": (False, None, 2048),
        "--overlong": (False, ["truncate", "drop"], "truncate"),
        "--image-size": (False, None, 448),
        "--global-batch": (False, None, 512),
        "--micro-batch": (False, None, 8),
        "--lr": (False, None, 1e-5),
        "--warmup-ratio": (False, None, 0.03),
        "--weight-decay": (False, None, 0.05),
        "--decay-1d --no-decay-1d": (False, None, True),
        "--grad-clip": (False, None, 1.0),
        "--epochs": (False, None, 1),
        "--max-steps": (False, None, 0),
        "--stop-after": (False, None, 0),
        "--seed": (False, None, None),
        "--num-workers": (False, None, 4),
        "--window": (False, None, 16),
        "--length-group": (False, None, 400),
        "--pad-multiple": (False, None, 64),
        "--gradient-checkpointing --no-gradient-checkpointing": (False, None, True),
        "--parallel": (False, ["auto", "none", "ddp", "fsdp"], "auto"),
        "--bf16 --no-bf16": (False, None, True),
        "--compile": (False, None, False),
        "--attention": (False, ["auto", "cudnn", "flash", "efficient", "math"], "auto"),
        "--gpu-decode": (False, None, False),
        "--exact-decode": (False, None, False),
        "--save-every": (False, None, 0),
        "--resume": (False, None, "auto"),
        "--peak-tflops": (False, None, 0.0),
        "--profile": (False, None, None),
    }
    assert [a.dest for a in sft_flags()] == [spec.name for spec in fields(TrainConfig)]
    assert all(a.help for a in sft_flags())


def test_sft_parses_into_the_config_and_its_defaults() -> None:
    args = make_parser().parse_args(
        ["sft", "--manifest", "m.json", "--model", "tiny", "--tokenizer", "t", "--out", "o", "--seed", "3"]
    )
    parsed = TrainConfig(**{spec.name: getattr(args, spec.name) for spec in fields(TrainConfig)})
    assert parsed == TrainConfig(manifest="m.json", model="tiny", tokenizer="t", out=Path("o"), seed=3)
    args = make_parser().parse_args(
        ["sft", "--manifest", "m", "--model", "m", "--tokenizer", "t", "--out", "o", "--no-bf16", "--compile"]
    )
    assert (args.bf16, args.compile, args.lr, args.profile) == (False, True, 1e-5, None)
    assert isinstance(args.peak_tflops, float) and isinstance(args.window, int)


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
        ("--window", "0", 1),
        ("--micro-batch", "0", 1),
        ("--global-batch", "0", 1),
        ("--max-length", "0", 1),
        ("--pad-multiple", "0", 1),
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
def test_a_manifest_cannot_lead_the_bridge_out_of_its_folder(
    tmp_path: Path, tokenizer_dir: Path, capsys, where: str
) -> None:
    from helpers.bridge_shards import manifest_leading_out

    manifest_path = manifest_leading_out(tmp_path, where)
    assert main(sft(manifest_path, tokenizer_dir, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "shards.0.path: Value error" in err and "inside the manifest's folder" in err
    )


@pytest.mark.parametrize("command", ["sft"])
def test_a_manifest_url_of_an_unsupported_scheme_is_one_line_and_status_2(
    tmp_path: Path, capsys, command: str
):
    args = ["--manifest", "s4://bucket/manifest.json", "--out", str(tmp_path / "o")]
    if command == "sft":
        args += ["--model", "tiny", "--tokenizer", str(tmp_path)]
    assert main([command, *args]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "unsupported scheme s4://" in error
    assert not (tmp_path / "o").exists()
