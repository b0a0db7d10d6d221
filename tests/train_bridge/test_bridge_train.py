"""Real training on CPU: overfitting, steps with nothing to learn, clipping, overlong samples, weight
decay groups, profiling, when checkpoints are due (resuming: test_bridge_checkpoint; torchrun:
test_bridge_distributed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train_bridge.train import _checkpoint_due, _param_groups, train

from helpers.bridge_shards import build_shards
from helpers.training import config


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


def test_sources_longer_than_max_length_by_the_manifests_token_statistics_are_named() -> None:
    from dataprep.contract.manifest import TokenStats
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


def test_checkpoints_are_due_at_the_last_step_and_every_n_unless_never() -> None:
    def due(save_every: int) -> list[int]:
        return [step for step in range(1, 8) if _checkpoint_due(save_every, step, last_step=7)]

    assert due(0) == [7] and due(3) == [3, 6, 7] and due(7) == [7] and due(-1) == []
