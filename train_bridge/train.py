"""The SFT loop: DDP or FSDP, bf16 autocast on CUDA, gradient accumulation to a global batch,
AdamW + cosine schedule, exact checkpoints (model, optimizer, scheduler, RNG, data position)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AutoTokenizer, PreTrainedTokenizerFast, get_cosine_schedule_with_warmup

from dataprep.manifest import TokenStats, load_manifest
from train_bridge import images
from train_bridge.config import Attention, Parallel, TrainConfig
from train_bridge.data import Encoder, ShardStream, make_loader
from train_bridge.errors import BridgeError
from train_bridge.model import add_special_tokens, image_geometry, load_model
from train_bridge.profiling import step_profiler
from train_bridge.template import IGNORE_INDEX

ATTENTION_BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}
"""Dense bf16 peaks; the first name found in the device's name wins (variants before the family)."""


class SFTModule(nn.Module):
    """Wraps the model so that DDP/FSDP see one forward returning the summed token loss.

    Batches are right-padded, so no attention mask is passed: causal attention already keeps every
    real token from the pads after it, and pad positions are never scored; without a mask, SDPA
    takes its causal fast path (flash/cuDNN kernels, no mask tensor). A micro-batch without images
    still runs the vision tower on one blank image (weight 0), so every parameter gets a gradient
    on every rank, as DDP and FSDP require.
    """

    def __init__(self, model: nn.Module, image_size: int) -> None:
        super().__init__()
        self.model = model
        self.image_size = image_size

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        pixel_values: torch.Tensor,
    ) -> torch.Tensor:
        has_images = pixel_values.shape[0] > 0
        unused = torch.zeros((), device=input_ids.device)
        if not has_images:  # before the language model, so FSDP ranks gather layers in one order
            config = self.model.config
            blank = torch.zeros(1, 3, self.image_size, self.image_size, device=input_ids.device)
            unused = self.model.model.get_image_features(
                pixel_values=blank,
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
            ).pooler_output.sum()
        hidden = self.model.model(
            input_ids=input_ids,
            pixel_values=pixel_values if has_images else None,
            use_cache=False,
        ).last_hidden_state
        targets = labels[:, 1:]
        scored = targets != IGNORE_INDEX  # the output projection runs only where a label is scored
        logits = self.model.lm_head(hidden[:, :-1][scored])
        loss = F.cross_entropy(logits.float(), targets[scored], reduction="sum")
        return loss + 0.0 * unused


def _attention(choice: Attention) -> AbstractContextManager[None]:
    """The scaled-dot-product attention kernels a forward may use (`auto`: PyTorch's choice)."""
    return nullcontext() if choice == "auto" else sdpa_kernel(ATTENTION_BACKENDS[choice])


def _setup_distributed(parallel: Parallel) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether this call created the process group). A single process
    asked for DDP or FSDP without torchrun gets a one-member group."""
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
    backend = "nccl" if device.type == "cuda" else "gloo"
    if dist.is_initialized() or (world == 1 and parallel in ("auto", "none")):
        return rank, world, device, False
    if "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return rank, world, device, True


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def _param_groups(model: nn.Module, weight_decay: float, decay_1d: bool) -> list[dict[str, Any]]:
    """Weight decay on every parameter, as V1-2's DeepSpeed AdamW; without `decay_1d`, none on
    biases and norm weights (1-D parameters)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if decay_1d:
        return [{"params": trainable, "weight_decay": weight_decay}]
    decay = [p for p in trainable if p.ndim >= 2]
    rest = [p for p in trainable if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _wrap(module: SFTModule, parallel: Parallel, world: int, device: torch.device, bf16: bool) -> nn.Module:
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
        inner = module.model.model
        for layer in [*inner.vision_tower.encoder.layer, *inner.language_model.layers]:
            fully_shard(layer, **kwargs)
        return fully_shard(module, **kwargs)
    return module


class FlopCounter:
    """Model FLOPs of one forward + backward: 6·N per token (the output projection only on scored
    tokens, which is all it runs on; the ViT on its patches + class token, the projector on the image
    tokens, the patch embedding 4·N as the pixels need no gradient) plus attention (causal: half of
    the LLM's square); activation recomputation is not counted."""

    def __init__(self, model: nn.Module) -> None:
        config = model.config
        self.text, self.vision = config.text_config, config.vision_config
        inner = model.model
        self.llm_params = sum(p.numel() for p in inner.language_model.parameters()) - (
            inner.language_model.embed_tokens.weight.numel()
        )
        self.head_params = self.text.vocab_size * self.text.hidden_size
        size, self.image_tokens = image_geometry(model)
        self.patches = (size // self.vision.patch_size[0]) ** 2 + 1
        vision = inner.vision_tower
        embeddings = sum(p.numel() for p in vision.embeddings.parameters())
        self.vit_params = sum(p.numel() for p in vision.parameters()) - embeddings
        self.patch_embed_params = sum(p.numel() for p in vision.embeddings.patch_embeddings.parameters())
        self.projector_params = sum(p.numel() for p in inner.multi_modal_projector.parameters())

    def __call__(self, batch: dict[str, Any]) -> float:
        lengths = batch["attention_mask"].sum(1).double()
        scored = (batch["labels"][:, 1:] != IGNORE_INDEX).sum().item()
        flops = 6 * self.llm_params * lengths.sum().item() + 6 * self.head_params * scored
        flops += 6 * self.text.num_hidden_layers * self.text.hidden_size * (lengths**2).sum().item()
        images = len(batch["images"])
        flops += 6 * (self.vit_params * self.patches + self.projector_params * self.image_tokens) * images
        flops += 4 * self.patch_embed_params * (self.patches - 1) * images  # no gradient for the pixels
        flops += 12 * self.vision.num_hidden_layers * self.vision.hidden_size * self.patches**2 * images
        return float(flops)


def _peak_flops(config: TrainConfig, device: torch.device) -> float:
    if config.peak_tflops:
        return config.peak_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS.items() if key in name), 0.0)
    return 0.0


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
    """Sharded model + optimizer (torch.distributed.checkpoint), scheduler, per-rank RNG, position."""
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
    rank = dist.get_rank() if dist.is_initialized() else 0
    model_state, optim_state = get_state_dict(wrapped, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(folder / "weights"))
    set_state_dict(wrapped, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    trainer = torch.load(folder / "trainer.pt", weights_only=False)
    scheduler.load_state_dict(trainer.pop("scheduler"))
    _set_rng_state(torch.load(folder / f"rng-{rank}.pt", weights_only=False))
    return trainer


def overlong_warnings(tokens: TokenStats | None, max_length: int, image_tokens: int) -> list[str]:
    """Sources whose longest sample, by the manifest's token statistics (made with the same tokens
    per image), exceeds `max_length` even before the template's own tokens."""
    if tokens is None or tokens.image_tokens != image_tokens:
        return []
    return [
        f"source {name}: its longest sample has {summary['max']:,.0f} tokens by the manifest's statistics "
        f"(template not counted) > --max-length {max_length:,}; such samples are truncated or dropped "
        "(counted in the metrics)"
        for name, summary in tokens.per_source.items()
        if summary.get("max", 0) > max_length
    ]


def _enable_activation_checkpointing(model: nn.Module) -> None:
    """Non-reentrant recompute of every layer; transformers ≥ 5.24 renamed the method."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _open_metrics(path: Path, step: int) -> IO[str]:
    """Append to the metrics file, first dropping lines of steps after `step` (a run that died after
    its last checkpoint and is resumed from it logs those steps again)."""
    if path.exists():
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if json.loads(line)["step"] <= step]
        if kept != lines:
            path.write_text("".join(kept))
    return open(path, "a")


def _load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """A tokenizer folder (AutoTokenizer), or a Hugging Face `tokenizer.json` file."""
    if path.is_file():
        return PreTrainedTokenizerFast(tokenizer_file=str(path))
    if path.is_dir():
        return AutoTokenizer.from_pretrained(path)
    raise BridgeError(f"--tokenizer: {path} is neither a tokenizer folder nor a tokenizer.json file")


def _find_resume(config: TrainConfig) -> Path | None:
    if config.resume == "none":
        return None
    if config.resume == "auto":
        latest = config.out / "checkpoints" / "latest"
        return latest.parent / latest.read_text().strip() if latest.exists() else None
    folder = Path(config.resume)
    if not (folder / "trainer.pt").is_file():
        raise BridgeError(f"--resume: {folder} is not a checkpoint folder (no trainer.pt)")
    return folder


def _gathered(keys: list[str]) -> list[str]:
    """Every rank's keys (the step's whole global batch)."""
    if not dist.is_initialized():
        return keys
    everyone: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, keys)
    return [key for rank_keys in everyone for key in rank_keys or []]


def _digest(keys: list[str]) -> str:
    """Of a global batch's samples, in any order (ranks and micro-batches split it differently)."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def train(config: TrainConfig) -> list[dict[str, Any]]:
    """Run (or resume) the SFT job; return the metrics records written by rank 0."""
    rank, world, device, created_group = _setup_distributed(config.parallel)
    try:
        return _train(config, rank, world, device)
    finally:
        if created_group:
            dist.destroy_process_group()


def _train(config: TrainConfig, rank: int, world: int, device: torch.device) -> list[dict[str, Any]]:
    manifest = load_manifest(config.manifest)
    seed = manifest.seed if config.seed is None else config.seed
    random.seed(seed)  # dropout and the like; a resumed run restores these states from its checkpoint
    np.random.seed(seed)
    torch.manual_seed(seed)
    if config.global_batch % (config.micro_batch * world):
        raise BridgeError(
            f"global batch {config.global_batch} is not a multiple of {config.micro_batch} × {world}"
        )
    accum = config.global_batch // (config.micro_batch * world)

    tokenizer = _load_tokenizer(Path(config.tokenizer))
    add_special_tokens(tokenizer)
    cuda = device.type == "cuda"
    model = load_model(config.model, tokenizer, image_size=config.image_size, device=device, seed=seed)
    if config.gradient_checkpointing:
        _enable_activation_checkpointing(model)
    image_size, image_tokens = image_geometry(model)
    gpu_decode = config.gpu_decode and images.gpu_decode_available()

    encoder = Encoder(
        tokenizer, image_size, image_tokens, config.max_length, config.system, config.overlong, gpu_decode
    )
    dataset = ShardStream(
        config.manifest,
        encoder,
        batch_size=config.micro_batch,
        rank=rank,
        world_size=world,
        seed=seed,
        window=config.window,
        pad_id=tokenizer.pad_token_id,
        pad_multiple=config.pad_multiple,
        length_group=config.length_group,
    )
    if rank == 0:
        for warning in overlong_warnings(manifest.stats.tokens, config.max_length, image_tokens):
            print(f"warning: {warning}", file=sys.stderr)
    steps_per_epoch = dataset.batches_per_epoch() // accum
    if steps_per_epoch == 0:
        raise BridgeError(
            f"{dataset.total} samples do not fill one global batch of {config.global_batch} (--global-batch)"
        )
    total_steps = config.max_steps or config.epochs * steps_per_epoch

    module = SFTModule(model, image_size)
    if config.compile:
        for layer in [*model.model.vision_tower.encoder.layer, *model.model.language_model.layers]:
            layer.compile(dynamic=True)
    wrapped = _wrap(module, config.parallel, world, device, config.bf16 and cuda)
    optimizer = torch.optim.AdamW(
        _param_groups(wrapped, config.weight_decay, config.decay_1d),
        lr=config.lr,
        betas=(0.9, 0.999),
        fused=cuda or None,
    )
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps
    )

    step, totals = 0, {"dropped": 0, "truncated": 0}
    layout = {
        "world_size": world,
        "micro_batch": config.micro_batch,
        "global_batch": config.global_batch,
        "seed": dataset.seed,
        "window": config.window,
        "length_group_samples": config.length_group,  # in samples (earlier: global batches)
        "manifest": dataset.content_sha256,
    }
    if (folder := _find_resume(config)) is not None:
        trainer = load_checkpoint(folder, wrapped, optimizer, scheduler)
        if trainer["layout"] != layout:
            changed = sorted(k for k in layout if trainer["layout"].get(k) != layout[k])
            raise BridgeError(
                f"exact resume needs the same data order and batch layout; changed: {', '.join(changed)} "
                f"(checkpoint {trainer['layout']}, now {layout}); to start afresh, give --resume none "
                "or another --out"
            )
        step, totals = trainer["step"], trainer["totals"]

    config.out.mkdir(parents=True, exist_ok=True)
    metrics_file = _open_metrics(config.out / "metrics.jsonl", step) if rank == 0 else None
    sources = dataset.sources
    peak = _peak_flops(config, device)
    count_flops = FlopCounter(model)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and config.bf16 else nullcontext()
    records: list[dict[str, Any]] = []
    last_step = min(total_steps, step + config.stop_after) if config.stop_after else total_steps
    if step >= last_step and rank == 0:
        print(
            f"nothing to train: the run in {config.out} is at step {step} of {total_steps}", file=sys.stderr
        )
    wrapped.train()

    with step_profiler(config.profile, rank) as profile_step:
        while step < last_step:
            epoch, start = divmod(step, steps_per_epoch)
            dataset.set_position(epoch, start * accum)
            batches = iter(make_loader(dataset, config.num_workers, pin_memory=cuda))
            for _ in range(start, steps_per_epoch):
                if step >= last_step:
                    break
                began = time.perf_counter()
                micro = [next(batches) for _ in range(accum)]
                waited = time.perf_counter() - began
                counts = torch.zeros(6 + len(sources), dtype=torch.float64)
                for batch in micro:
                    counts[0] += (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
                    counts[2] += batch["attention_mask"].sum()
                    counts[3] += batch["dropped"]
                    counts[4] += batch["truncated"]
                    counts[5] += batch["attention_mask"].numel()
                    for name in batch["sources"]:
                        counts[6 + sources.index(name)] += 1
                target_tokens = (
                    _all_reduce(counts[:1].clone().to(device))[0].item()
                    if dist.is_initialized()
                    else counts[0].item()
                )
                loss_sum = torch.zeros((), device=device)
                flops = 0.0
                for index, batch in enumerate(micro):
                    last = index == accum - 1
                    fetch = time.perf_counter()
                    inputs = [batch[k].to(device, non_blocking=True) for k in ("input_ids", "labels")]
                    pixels = (
                        images.finish_on_device(batch["images"], image_size, device)
                        if gpu_decode
                        else (
                            batch["images"].to(device, non_blocking=True)
                            if len(batch["images"])
                            else torch.empty(0, 3, image_size, image_size, device=device)
                        )
                    )
                    waited += time.perf_counter() - fetch
                    if peak:
                        flops += count_flops(batch)
                    sync = nullcontext()
                    if hasattr(wrapped, "no_sync") and not last:
                        sync = wrapped.no_sync()
                    elif hasattr(wrapped, "set_requires_gradient_sync"):
                        wrapped.set_requires_gradient_sync(last)
                    with sync:
                        with autocast, _attention(config.attention):
                            loss = wrapped(*inputs, pixels)
                        (loss * world / max(target_tokens, 1.0)).backward()
                    loss_sum += loss.detach()
                clip = config.grad_clip if config.grad_clip > 0 else math.inf  # 0: measured, not clipped
                grad_norm = torch.nn.utils.clip_grad_norm_(wrapped.parameters(), clip)
                if hasattr(grad_norm, "full_tensor"):
                    grad_norm = grad_norm.full_tensor()
                lr = scheduler.get_last_lr()[0]
                if target_tokens:  # a global batch with nothing to learn moves no weight
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                counts[1] = loss_sum.double().cpu()
                counts = _all_reduce(counts.to(device)).cpu()
                if cuda:
                    torch.cuda.synchronize(device)
                elapsed = time.perf_counter() - began
                totals["dropped"] += int(counts[3])
                totals["truncated"] += int(counts[4])
                record = {
                    "step": step,
                    "epoch": epoch,
                    "loss": counts[1].item() / counts[0].item() if counts[0] else None,
                    "lr": lr,
                    "grad_norm": float(grad_norm),
                    "target_tokens": int(counts[0]),
                    "tokens_per_s": counts[2].item() / elapsed,
                    "pad_fraction": 1.0 - counts[2].item() / max(counts[5].item(), 1.0),
                    "samples_per_s": counts[6:].sum().item() / elapsed,
                    "samples_per_s_by_source": {
                        n: counts[6 + i].item() / elapsed for i, n in enumerate(sources)
                    },
                    "data_wait": waited / elapsed,
                    "step_time": elapsed,
                    "dropped": totals["dropped"],
                    "truncated": totals["truncated"],
                    "data": _digest(_gathered([k for batch in micro for k in batch["keys"]])),
                }
                if peak:
                    record["mfu"] = _all_reduce(torch.tensor(flops, device=device)).item() / (
                        elapsed * peak * world
                    )
                records.append(record)
                profile_step()
                if metrics_file:
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                if config.save_every >= 0 and (
                    step == last_step or (config.save_every and step % config.save_every == 0)
                ):
                    folder = config.out / "checkpoints" / f"step-{step:08d}"
                    position = divmod(step, steps_per_epoch)
                    trainer = {
                        "step": step,
                        "totals": totals,
                        "data_position": {"epoch": position[0], "micro_batch": position[1] * accum},
                        "layout": layout,
                        "config": {k: str(v) for k, v in asdict(config).items()},
                    }
                    save_checkpoint(folder, wrapped, optimizer, scheduler, trainer)
            del batches
    if metrics_file:
        metrics_file.close()
    return records
