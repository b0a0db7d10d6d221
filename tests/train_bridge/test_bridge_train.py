"""Real training on CPU: overfitting, exact resume, and torchrun (gloo) with DDP and FSDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bridge_fixtures import build_shards

from train_bridge.config import TrainConfig
from train_bridge.train import _param_groups, train

TORCHRUN = Path(sys.executable).with_name("torchrun")


def config(manifest: Path, tokenizer_dir: Path, out: Path, **overrides) -> TrainConfig:
    base = {
        "manifest": manifest,
        "model": "tiny",
        "tokenizer": str(tokenizer_dir),
        "out": out,
        "image_size": 28,
        "global_batch": 4,
        "micro_batch": 2,
        "lr": 1e-3,
        "num_workers": 1,
        "gradient_checkpointing": False,
        "resume": "none",
    }
    return TrainConfig(**{**base, **overrides})


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tiny_model_overfits_eight_samples(tmp_path: Path, tokenizer_dir: Path) -> None:
    manifest = build_shards(tmp_path / "mix", samples=8, per_shard=4)
    records = train(
        config(
            manifest,
            tokenizer_dir,
            tmp_path / "run",
            global_batch=8,
            micro_batch=4,
            lr=3e-3,
            warmup_ratio=0.0,
            max_steps=40,
            num_workers=0,
        )
    )
    losses = [r["loss"] for r in records]
    assert len(losses) == 40 and all(r["epoch"] == i for i, r in enumerate(records))
    assert min(losses[-5:]) < 0.5 * losses[0], losses
    assert sum(records[0]["samples_per_s_by_source"].values()) == pytest.approx(records[0]["samples_per_s"])
    assert 0 <= records[0]["data_wait"] < 1 and records[-1]["dropped"] == records[-1]["truncated"] == 0
    assert all(0 <= r["pad_fraction"] < 1 for r in records)


def test_resume_continues_exactly(tmp_path: Path, manifest_path: Path, tokenizer_dir: Path) -> None:
    whole = train(config(manifest_path, tokenizer_dir, tmp_path / "whole", max_steps=7))
    # 22 samples, 4 per step: 5 steps per epoch, so the run crosses into epoch 1
    assert [r["epoch"] for r in whole] == [0, 0, 0, 0, 0, 1, 1]
    part = train(
        config(manifest_path, tokenizer_dir, tmp_path / "part", max_steps=7, stop_after=5, save_every=3)
    )
    assert len(part) == 5 and (tmp_path / "part/checkpoints/step-00000003/trainer.pt").exists()
    # as if the run had died after logging steps 4-5 but before their checkpoint
    shutil.rmtree(tmp_path / "part/checkpoints/step-00000005")
    (tmp_path / "part/checkpoints/latest").write_text("step-00000003")
    with pytest.raises(ValueError, match="changed: window"):
        train(config(manifest_path, tokenizer_dir, tmp_path / "part", max_steps=7, resume="auto", window=2))
    rest = train(
        config(manifest_path, tokenizer_dir, tmp_path / "part", max_steps=7, resume="auto", num_workers=2)
    )
    assert [r["step"] for r in rest] == [4, 5, 6, 7]
    for a, b in zip(whole[3:], rest, strict=True):
        assert a["data"] == b["data"]
        assert a["loss"] == b["loss"] and a["lr"] == b["lr"] and a["grad_norm"] == b["grad_norm"]
    assert [r["step"] for r in read_metrics(tmp_path / "part")] == list(range(1, 8))
    trainer = torch.load(tmp_path / "part/checkpoints/step-00000007/trainer.pt", weights_only=False)
    assert trainer["data_position"] == {"epoch": 1, "micro_batch": 4}
    assert trainer["layout"]["length_group_samples"] == 400  # a unit change refuses older checkpoints


def test_resume_is_exact_for_a_model_with_dropout(
    tmp_path: Path, manifest_path: Path, tokenizer_dir: Path
) -> None:
    from transformers import AutoTokenizer

    from train_bridge.model import add_special_tokens, load_model

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    add_special_tokens(tokenizer)
    model = load_model("tiny", tokenizer, image_size=28)
    model.config.text_config.attention_dropout = 0.3
    model.save_pretrained(tmp_path / "dropout-model")
    run = {"model": str(tmp_path / "dropout-model"), "max_steps": 6}
    whole = train(config(manifest_path, tokenizer_dir, tmp_path / "whole", **run))
    again = train(config(manifest_path, tokenizer_dir, tmp_path / "again", **run))
    assert [r["loss"] for r in again] == [r["loss"] for r in whole]  # seeded: the same dropout masks
    train(config(manifest_path, tokenizer_dir, tmp_path / "part", **run, stop_after=3))
    rest = train(config(manifest_path, tokenizer_dir, tmp_path / "part", **run, resume="auto"))
    assert [r["loss"] for r in rest] == [r["loss"] for r in whole[3:]]


def test_a_tokenizer_file_works_and_batches_with_nothing_to_learn_log_no_loss(
    tmp_path: Path, manifest_path: Path, tokenizer_dir: Path, capsys
) -> None:
    run = {"tokenizer": str(tokenizer_dir / "tokenizer.json"), "max_steps": 2, "max_length": 5}
    records = train(
        config(manifest_path, tokenizer_dir, tmp_path / "run", overlong="drop", save_every=0, **run)
    )
    assert [(r["loss"], r["target_tokens"]) for r in records] == [(None, 0), (None, 0)]
    assert records[-1]["dropped"] == 8
    capsys.readouterr()
    again = train(
        config(manifest_path, tokenizer_dir, tmp_path / "run", overlong="drop", resume="auto", **run)
    )
    assert again == [] and "nothing to train: the run in" in capsys.readouterr().err


def test_a_clip_of_zero_measures_the_gradient_without_clipping_it(
    tmp_path: Path, manifest_path: Path, tokenizer_dir: Path
) -> None:
    off = train(
        config(manifest_path, tokenizer_dir, tmp_path / "off", max_steps=2, grad_clip=0.0, warmup_ratio=0.0)
    )
    huge = train(
        config(manifest_path, tokenizer_dir, tmp_path / "huge", max_steps=2, grad_clip=1e9, warmup_ratio=0.0)
    )
    tight = train(
        config(
            manifest_path, tokenizer_dir, tmp_path / "tight", max_steps=2, grad_clip=1e-3, warmup_ratio=0.0
        )
    )
    assert [(r["loss"], r["grad_norm"]) for r in off] == [(r["loss"], r["grad_norm"]) for r in huge]
    assert off[0]["grad_norm"] > 1e-3 and off[1]["loss"] != tight[1]["loss"]


def test_image_flops_match_an_independent_count(tokenizer) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from train_bridge.flops import FlopCounter
    from train_bridge.model import load_model

    model = load_model("tiny", tokenizer, image_size=56)
    image_only = {
        "attention_mask": torch.zeros(1, 1, dtype=torch.long),
        "labels": torch.full((1, 2), -100),
        "images": torch.zeros(1, 3, 56, 56),
    }
    config = model.config
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as measured:
        model.model.get_image_features(
            pixel_values=torch.randn(1, 3, 56, 56),
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
        ).pooler_output.sum().backward()
    assert FlopCounter(model)(image_only) == pytest.approx(measured.get_total_flops(), rel=0.03)


def test_overlong_samples_are_counted(tmp_path: Path, manifest_path: Path, tokenizer_dir: Path) -> None:
    records = train(config(manifest_path, tokenizer_dir, tmp_path / "run", max_steps=2, max_length=40))
    assert records[-1]["dropped"] + records[-1]["truncated"] > 0
    assert all(r["loss"] > 0 for r in records)
    dropping = train(
        config(manifest_path, tokenizer_dir, tmp_path / "drop", max_steps=3, max_length=60, overlong="drop")
    )
    dropped = [0] + [r["dropped"] for r in dropping]
    assert dropped[-1] > 0
    for record, before, after in zip(dropping, dropped, dropped[1:], strict=False):
        trained = record["samples_per_s"] * record["step_time"]
        assert trained == pytest.approx(4 - (after - before))  # dropped samples are not counted as trained


def test_weight_decay_reaches_every_parameter_unless_1d_ones_are_excluded() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    (everything,) = _param_groups(model, 0.05, decay_1d=True)
    assert len(everything["params"]) == 4 and everything["weight_decay"] == 0.05
    matrices, vectors = _param_groups(model, 0.05, decay_1d=False)
    assert [p.ndim for p in matrices["params"]] == [2] and vectors["weight_decay"] == 0.0
    assert len(vectors["params"]) == 3


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "train_bridge.cli", "sft", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def sft_args(manifest: Path, tokenizer_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--manifest",
        str(manifest),
        "--model",
        "tiny",
        "--tokenizer",
        str(tokenizer_dir),
        "--out",
        str(out),
        "--image-size",
        "28",
        "--global-batch",
        "4",
        "--micro-batch",
        "1",
        "--lr",
        "1e-3",
        "--max-steps",
        "3",
        "--num-workers",
        "1",
        "--no-gradient-checkpointing",
        *extra,
    ]


def test_torchrun_ddp_and_fsdp(tmp_path: Path, manifest_path: Path, tokenizer_dir: Path) -> None:
    ddp = tmp_path / "ddp"
    torchrun(sft_args(manifest_path, tokenizer_dir, ddp, "--parallel", "ddp"), tmp_path)
    assert (ddp / "checkpoints/latest").read_text() == "step-00000003"
    assert {p.name for p in (ddp / "checkpoints/step-00000003").iterdir()} >= {
        "rng-0.pt",
        "rng-1.pt",
        "trainer.pt",
    }
    ddp_metrics = read_metrics(ddp)
    assert [m["step"] for m in ddp_metrics] == [1, 2, 3]
    # the same global batches in one process give the same losses (world-size-independent order)
    single = train(config(manifest_path, tokenizer_dir, tmp_path / "single", max_steps=3))
    for a, b in zip(ddp_metrics, single, strict=True):
        assert a["data"] == b["data"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)  # both ranks
    # one process asked for DDP without torchrun gets a one-member group, closed afterwards
    alone = train(config(manifest_path, tokenizer_dir, tmp_path / "alone", max_steps=3, parallel="ddp"))
    assert not torch.distributed.is_initialized()
    assert [a["loss"] for a in alone] == pytest.approx([b["loss"] for b in single], rel=1e-5)

    fsdp = tmp_path / "fsdp"
    torchrun(
        sft_args(manifest_path, tokenizer_dir, fsdp, "--parallel", "fsdp", "--stop-after", "2"), tmp_path
    )
    torchrun(sft_args(manifest_path, tokenizer_dir, fsdp, "--parallel", "fsdp"), tmp_path)  # resumes
    fsdp_metrics = read_metrics(fsdp)
    assert [m["step"] for m in fsdp_metrics] == [1, 2, 3]
    for a, b in zip(ddp_metrics, fsdp_metrics, strict=True):
        assert a["data"] == b["data"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_profile_writes_one_section_per_captured_step(
    tmp_path: Path, manifest_path: Path, tokenizer_dir: Path
) -> None:
    records = train(
        config(manifest_path, tokenizer_dir, tmp_path / "run", max_steps=7, profile=tmp_path / "p")
    )
    text = (tmp_path / "p/profile-rank0.txt").read_text()
    assert len(records) == 7
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("== ")] == [
        "== step 5",
        "== step 6",
        "== step 7",
    ]
    assert "aten::" in text and "host ops" in text and "device kernels 0.0 ms" in text


def test_attention_kernels_can_be_chosen_without_changing_the_losses(
    tmp_path: Path, manifest_path: Path, tokenizer_dir: Path
) -> None:
    chosen = train(config(manifest_path, tokenizer_dir, tmp_path / "math", max_steps=2, attention="math"))
    default = train(config(manifest_path, tokenizer_dir, tmp_path / "auto", max_steps=2))
    assert [r["loss"] for r in chosen] == pytest.approx([r["loss"] for r in default], rel=1e-4)
    with pytest.raises(RuntimeError, match=r"scaled_dot_product_attention|No available kernel"):
        train(config(manifest_path, tokenizer_dir, tmp_path / "cudnn", max_steps=1, attention="cudnn"))


def test_a_window_or_batch_below_one_is_a_usage_error(tmp_path: Path, capsys) -> None:
    from train_bridge.cli import main

    for flag in ("--window", "--micro-batch"):
        args = ["sft", *sft_args(tmp_path / "m.json", tmp_path, tmp_path / "run"), flag, "0"]
        with pytest.raises(SystemExit) as stopped:
            main(args)
        assert stopped.value.code == 2
        assert f"argument {flag}: must be at least 1, not 0" in capsys.readouterr().err


def test_sources_longer_than_max_length_by_the_manifests_token_statistics_are_named() -> None:
    from dataprep.manifest import TokenStats
    from train_bridge.train import overlong_warnings

    def tokens(image_tokens: int) -> TokenStats:
        return TokenStats(
            tokenizer_sha256="0" * 64,
            image_tokens=image_tokens,
            per_sample={"count": 3, "max": 4000, "total": 4600},
            per_source={"long": {"count": 1, "max": 4000, "total": 4000}, "short": {"count": 2, "max": 300}},
        )

    (warning,) = overlong_warnings(tokens(256), max_length=2048, image_tokens=256)
    assert warning.startswith("source long: its longest sample has 4,000 tokens") and "2,048" in warning
    assert overlong_warnings(tokens(256), max_length=4096, image_tokens=256) == []
    assert overlong_warnings(tokens(64), max_length=2048, image_tokens=256) == []  # other image counts
    assert overlong_warnings(None, max_length=2048, image_tokens=256) == []
