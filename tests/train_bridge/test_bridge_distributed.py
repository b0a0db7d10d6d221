"""torchrun (gloo) with DDP and FSDP matches one process; a one-process group is made and closed;
the attention kernels can be chosen."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import torch

from train_bridge.config import Attention
from train_bridge.distributed import ATTENTION_BACKENDS, process_group
from train_bridge.errors import BridgeError
from train_bridge.train import train

from helpers.training import config, read_metrics, sft_args, torchrun


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


def test_a_process_group_is_made_only_when_asked_for_and_closed_even_on_errors(monkeypatch) -> None:
    with process_group("auto") as place:
        assert (place.rank, place.world) == (0, 1) and not torch.distributed.is_initialized()
    with pytest.raises(RuntimeError, match="inside"), process_group("fsdp") as place:
        assert torch.distributed.get_world_size() == 1
        raise RuntimeError("inside")
    assert not torch.distributed.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(BridgeError, match="would train 2 unsynchronised models"), process_group("none"):
        pass


def test_attention_kernels_can_be_chosen_without_changing_the_losses(
    tmp_path: Path, manifest_path: Path, tokenizer_dir: Path
) -> None:
    assert set(typing.get_args(Attention)) == {"auto", *ATTENTION_BACKENDS}
    chosen = train(config(manifest_path, tokenizer_dir, tmp_path / "math", max_steps=2, attention="math"))
    default = train(config(manifest_path, tokenizer_dir, tmp_path / "auto", max_steps=2))
    assert [r["loss"] for r in chosen] == pytest.approx([r["loss"] for r in default], rel=1e-4)
    with pytest.raises(RuntimeError, match=r"scaled_dot_product_attention|No available kernel"):
        train(config(manifest_path, tokenizer_dir, tmp_path / "cudnn", max_steps=1, attention="cudnn"))
