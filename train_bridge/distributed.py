"""Where this process trains (rank, world size, device), the collectives of a step, wrapping the model
in DDP or FSDP, gradient synchronisation across micro-batches, and the attention kernels."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from train_bridge.config import Attention, Parallel
from train_bridge.errors import BridgeError
from train_bridge.model import transformer_layers

ATTENTION_BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


@dataclass(frozen=True)
class Placement:
    """This process's rank among `world` processes, and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


@contextmanager
def process_group(parallel: Parallel) -> Iterator[Placement]:
    """This process's placement from torchrun's environment, inside a process group when one is needed.
    A single process asked for DDP or FSDP without torchrun gets a one-member group, closed on exit."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and parallel == "none":
        raise BridgeError(
            f"--parallel none with WORLD_SIZE={world} would train {world} unsynchronised models"
        )
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    placement = Placement(rank, world, device)
    if dist.is_initialized() or (world == 1 and parallel in ("auto", "none")):
        yield placement
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield placement
    finally:
        dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over every rank, in place (itself without a process group)."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def summed(value: float, device: torch.device) -> float:
    """One number summed over every rank (in float64)."""
    if not dist.is_initialized():
        return value
    return all_reduce(torch.tensor([value], dtype=torch.float64, device=device))[0].item()


def gathered(keys: list[str]) -> list[str]:
    """Every rank's keys (the step's whole global batch)."""
    if not dist.is_initialized():
        return keys
    everyone: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, keys)
    return [key for rank_keys in everyone for key in rank_keys or []]


def wrap(module: nn.Module, parallel: Parallel, world: int, device: torch.device, bf16: bool) -> nn.Module:
    """`module` under DDP, or FSDP2 per ViT and LLM layer (bf16 parameters, fp32 reduce with `bf16`), or
    as it is; `auto`: DDP when there are several processes. `module.model` is the InternVL model."""
    if parallel == "auto":
        parallel = "ddp" if world > 1 else "none"
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    if parallel == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = (
            MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else None
        )
        kwargs = {"mp_policy": policy} if policy else {}
        for layer in transformer_layers(module.model):
            fully_shard(layer, **kwargs)
        return fully_shard(module, **kwargs)
    return module


def gradient_sync(wrapped: nn.Module, last: bool) -> AbstractContextManager[None]:
    """Gradients are reduced across ranks on the `last` micro-batch of a step only."""
    if hasattr(wrapped, "no_sync") and not last:
        return wrapped.no_sync()
    if hasattr(wrapped, "set_requires_gradient_sync"):
        wrapped.set_requires_gradient_sync(last)
    return nullcontext()


def attention(choice: Attention) -> AbstractContextManager[None]:
    """The scaled-dot-product attention kernels a forward may use (`auto`: PyTorch's choice)."""
    return nullcontext() if choice == "auto" else sdpa_kernel(ATTENTION_BACKENDS[choice])
