"""Exact checkpoints under `OUT/checkpoints/step-NNNNNNNN/`: model + optimizer (sharded,
torch.distributed.checkpoint), scheduler and trainer state, each rank's RNG; `latest` names the newest."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from train_bridge.errors import BridgeError


def step_folder(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:08d}"


def find_resume(resume: str, out: Path) -> Path | None:
    """The checkpoint `--resume` names: `none`, `auto` (the latest under `out`, if any) or a folder."""
    if resume == "none":
        return None
    if resume == "auto":
        latest = out / "checkpoints" / "latest"
        return latest.parent / latest.read_text().strip() if latest.exists() else None
    folder = Path(resume)
    if not (folder / "trainer.pt").is_file():
        raise BridgeError(f"--resume: {folder} is not a checkpoint folder (no trainer.pt)")
    return folder


def check_layout(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """A run resumes exactly only with the data order and batch layout its checkpoint was made with."""
    if saved != now:
        changed = sorted(k for k in now if saved.get(k) != now[k])
        raise BridgeError(
            f"exact resume needs the same data order and batch layout; changed: {', '.join(changed)} "
            f"(checkpoint {saved}, now {now}); to start afresh, give --resume none or another --out"
        )


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(
    folder: Path, wrapped: nn.Module, optimizer: Any, scheduler: Any, trainer: dict[str, Any]
) -> None:
    """Sharded model + optimizer (torch.distributed.checkpoint), scheduler, per-rank RNG, `trainer`
    (position and totals); then, once every rank is done, `latest` names `folder`."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    model_state, optim_state = get_state_dict(wrapped, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(folder / "weights"))
    torch.save(_rng_state(), folder / f"rng-{rank}.pt")
    if rank == 0:
        torch.save({"scheduler": scheduler.state_dict(), **trainer}, folder / "trainer.pt")
    if dist.is_initialized():
        dist.barrier()
    if rank == 0:
        latest = folder.parent / "latest"
        latest.with_suffix(".partial").write_text(folder.name)
        os.replace(latest.with_suffix(".partial"), latest)


def load_checkpoint(folder: Path, wrapped: nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore what `save_checkpoint` saved into the model, optimizer, scheduler and this rank's RNG;
    return the trainer state."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    model_state, optim_state = get_state_dict(wrapped, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(folder / "weights"))
    set_state_dict(wrapped, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    trainer = torch.load(folder / "trainer.pt", weights_only=False)
    scheduler.load_state_dict(trainer.pop("scheduler"))
    _set_rng_state(torch.load(folder / f"rng-{rank}.pt", weights_only=False))
    return trainer
