"""Checkpoints: a stopped run resumes exactly (data, losses, lr, grad norms, dropout masks); what may
not change for that is checked; `--resume` finds its folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from train_bridge.checkpoint import check_layout, find_resume, step_folder
from train_bridge.errors import BridgeError
from train_bridge.train import train

from helpers.training import config, read_metrics


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


def test_resume_finds_the_latest_checkpoint_or_the_folder_named(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert find_resume("auto", out) is None and find_resume("none", out) is None  # a new run
    folder = step_folder(out, 12)
    assert folder == out / "checkpoints/step-00000012"
    folder.mkdir(parents=True)
    (folder / "trainer.pt").write_bytes(b"")
    (out / "checkpoints/latest").write_text("step-00000012\n")
    assert find_resume("auto", out) == folder and find_resume("none", out) is None
    assert find_resume(str(folder), tmp_path / "elsewhere") == folder
    with pytest.raises(BridgeError, match=r"--resume: .* is not a checkpoint folder \(no trainer.pt\)"):
        find_resume(str(out), out)


def test_a_changed_layout_names_what_changed() -> None:
    saved = {"world_size": 2, "micro_batch": 8, "window": 16, "seed": 1}
    check_layout(saved, dict(saved))
    with pytest.raises(BridgeError, match=r"changed: seed, world_size \(checkpoint .*--resume none"):
        check_layout(saved, {**saved, "world_size": 4, "seed": 2})
