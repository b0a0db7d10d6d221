"""The SFT loop: gradient accumulation to a global batch, AdamW + cosine schedule, bf16 autocast on
CUDA; every step logged, and resumable exactly from its checkpoints."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerFast, get_cosine_schedule_with_warmup

from dataprep.contract.manifest import TokenStats, load_manifest
from train_bridge import images
from train_bridge.checkpoint import check_layout, find_resume, load_checkpoint, save_checkpoint, step_folder
from train_bridge.config import TrainConfig
from train_bridge.data import Encoder, ShardStream, make_loader
from train_bridge.distributed import (
    Placement,
    attention,
    gathered,
    gradient_sync,
    process_group,
    summed,
    wrap,
)
from train_bridge.errors import BridgeError
from train_bridge.flops import FlopCounter, peak_flops
from train_bridge.loss import SFTModule
from train_bridge.metrics import StepCounts, digest, open_metrics, step_record
from train_bridge.model import add_special_tokens, image_geometry, load_model, transformer_layers
from train_bridge.profiling import step_profiler


@dataclass
class Run:
    """What the loop works with, prepared once by `_prepare`."""

    config: TrainConfig
    place: Placement
    wrapped: nn.Module  # SFTModule(model), under DDP or FSDP when parallel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    dataset: ShardStream
    image_size: int
    gpu_decode: bool
    accum: int  # micro-batches per rank per step
    steps_per_epoch: int
    total_steps: int  # the schedule's length
    layout: dict[str, Any]  # what fixes the data order: a checkpoint resumes only with the same
    peak: float  # FLOP/s of all devices together, for the MFU; 0: unknown
    count_flops: FlopCounter | None  # when the peak is known


def train(config: TrainConfig) -> list[dict[str, Any]]:
    """Run (or resume) the SFT job; return the metrics records (every rank's copy: rank 0 writes them)."""
    with process_group(config.parallel) as place:
        run = _prepare(config, place)
        first, totals = _resume(run)
        return _loop(run, first, totals)


def _prepare(config: TrainConfig, place: Placement) -> Run:
    """Seed, tokenizer, model, data stream, wrapping, optimizer and schedule, in that order."""
    manifest = load_manifest(config.manifest)
    seed = manifest.seed if config.seed is None else config.seed
    random.seed(seed)  # dropout and the like; a resumed run restores these states from its checkpoint
    np.random.seed(seed)
    torch.manual_seed(seed)
    if config.global_batch % (config.micro_batch * place.world):
        raise BridgeError(
            f"global batch {config.global_batch} is not a multiple of {config.micro_batch} × {place.world}"
        )
    accum = config.global_batch // (config.micro_batch * place.world)

    tokenizer = _load_tokenizer(Path(config.tokenizer))
    add_special_tokens(tokenizer)
    model = load_model(config.model, tokenizer, image_size=config.image_size, device=place.device, seed=seed)
    if config.gradient_checkpointing:
        _enable_activation_checkpointing(model)
    image_size, image_tokens = image_geometry(model)
    gpu_decode = config.gpu_decode and images.gpu_decode_available()
    dataset = _stream(config, place, tokenizer, image_size, image_tokens, gpu_decode, seed)
    if place.rank == 0:
        for warning in overlong_warnings(manifest.stats.tokens, config.max_length, image_tokens):
            print(f"warning: {warning}", file=sys.stderr)
    steps_per_epoch = dataset.batches_per_epoch() // accum
    if steps_per_epoch == 0:
        raise BridgeError(
            f"{dataset.total} samples do not fill one global batch of {config.global_batch} (--global-batch)"
        )
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    wrapped = _wrapped(config, place, model, image_size)
    optimizer = torch.optim.AdamW(
        _param_groups(wrapped, config.weight_decay, config.decay_1d),
        lr=config.lr,
        betas=(0.9, 0.999),
        fused=place.cuda or None,
    )
    peak = peak_flops(config.peak_tflops, place.device) * place.world
    return Run(
        config=config,
        place=place,
        wrapped=wrapped,
        optimizer=optimizer,
        scheduler=get_cosine_schedule_with_warmup(
            optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps
        ),
        dataset=dataset,
        image_size=image_size,
        gpu_decode=gpu_decode,
        accum=accum,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        layout={
            "world_size": place.world,
            "micro_batch": config.micro_batch,
            "global_batch": config.global_batch,
            "seed": dataset.seed,
            "window": config.window,
            "length_group_samples": config.length_group,  # in samples (earlier: global batches)
            "manifest": dataset.content_sha256,
        },
        peak=peak,
        count_flops=FlopCounter(model) if peak else None,
    )


def _stream(
    config: TrainConfig,
    place: Placement,
    tokenizer: PreTrainedTokenizerFast,
    image_size: int,
    image_tokens: int,
    gpu_decode: bool,
    seed: int,
) -> ShardStream:
    """This rank's micro-batches of the manifest's shards, encoded for the model."""
    encoder = Encoder(
        tokenizer,
        image_size,
        image_tokens,
        config.max_length,
        config.system,
        config.overlong,
        gpu_decode,
        config.exact_decode,
    )
    return ShardStream(
        config.manifest,
        encoder,
        batch_size=config.micro_batch,
        rank=place.rank,
        world_size=place.world,
        seed=seed,
        window=config.window,
        pad_id=tokenizer.pad_token_id,
        pad_multiple=config.pad_multiple,
        length_group=config.length_group,
    )


def _wrapped(config: TrainConfig, place: Placement, model: nn.Module, image_size: int) -> nn.Module:
    """The model's loss module, its layers compiled with `--compile`, under DDP or FSDP when parallel."""
    module = SFTModule(model, image_size)
    if config.compile:
        for layer in transformer_layers(model):
            layer.compile(dynamic=True)
    return wrap(module, config.parallel, place.world, place.device, config.bf16 and place.cuda)


@dataclass
class GlobalBatch:
    """This rank's share of one step's global batch."""

    step: int  # counted from 1
    epoch: int
    micro: list[dict[str, Any]]  # micro-batches
    began: float  # when fetching them began (perf_counter)
    waited: float  # seconds it took


def _resume(run: Run) -> tuple[int, dict[str, int]]:
    """The step to continue from and the dropped/truncated totals so far: (0, zeros) for a new run."""
    folder = find_resume(run.config.resume, run.config.out)
    if folder is None:
        return 0, {"dropped": 0, "truncated": 0}
    trainer = load_checkpoint(folder, run.wrapped, run.optimizer, run.scheduler)
    check_layout(trainer["layout"], run.layout)
    return trainer["step"], trainer["totals"]


def _loop(run: Run, first: int, totals: dict[str, int]) -> list[dict[str, Any]]:
    """Train from step `first` to the end of the schedule or `--stop-after`; return the records logged."""
    config, place = run.config, run.place
    config.out.mkdir(parents=True, exist_ok=True)
    metrics_file = open_metrics(config.out / "metrics.jsonl", first) if place.rank == 0 else None
    records: list[dict[str, Any]] = []
    last_step = min(run.total_steps, first + config.stop_after) if config.stop_after else run.total_steps
    if first >= last_step and place.rank == 0:
        print(
            f"nothing to train: the run in {config.out} is at step {first} of {run.total_steps}",
            file=sys.stderr,
        )
    run.wrapped.train()

    with step_profiler(config.profile, place.rank) as profile_step:
        for batch in _global_batches(run, first, last_step):
            record = _step(run, batch, totals)
            records.append(record)
            profile_step()
            if metrics_file:
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
            if _checkpoint_due(config.save_every, batch.step, last_step):
                _save(run, batch.step, totals)
    if metrics_file:
        metrics_file.close()
    return records


def _step(run: Run, batch: GlobalBatch, totals: dict[str, int]) -> dict[str, Any]:
    """Train one step; add its dropped and truncated samples to `totals`; return its metrics record."""
    place = run.place
    counts = StepCounts.of(batch.micro, run.dataset.sources, run.count_flops)
    target_tokens = summed(counts.target_tokens, place.device)
    loss_sum, copying = _forward_backward(run, batch.micro, target_tokens)
    lr, grad_norm = _optimizer_step(run, stepped=target_tokens > 0)
    counts.loss_sum = loss_sum.double().item()
    counts = counts.summed(place.device)
    if place.cuda:
        torch.cuda.synchronize(place.device)
    elapsed = time.perf_counter() - batch.began
    totals["dropped"] += int(counts.dropped)
    totals["truncated"] += int(counts.truncated)
    data = digest(gathered([key for micro in batch.micro for key in micro["keys"]]))
    return step_record(
        step=batch.step,
        epoch=batch.epoch,
        counts=counts,
        lr=lr,
        grad_norm=float(grad_norm),
        elapsed=elapsed,
        waited=batch.waited + copying,
        totals=totals,
        data=data,
        peak=run.peak,
    )


def _global_batches(run: Run, first: int, last: int) -> Iterator[GlobalBatch]:
    """This rank's share of steps first+1 … last. Each epoch reads from a loader of its own, started at
    the epoch's position (mid-epoch when resumed)."""
    batches: Iterator[dict[str, Any]] | None = None
    for step in range(first, last):
        epoch, index = divmod(step, run.steps_per_epoch)
        if batches is None or index == 0:
            batches = None  # the last epoch's workers stop before the next epoch's start
            run.dataset.set_position(epoch, index * run.accum)
            batches = iter(make_loader(run.dataset, run.config.num_workers, pin_memory=run.place.cuda))
        began = time.perf_counter()
        micro = [next(batches) for _ in range(run.accum)]
        yield GlobalBatch(step + 1, epoch, micro, began, time.perf_counter() - began)


def _forward_backward(
    run: Run, micro: list[dict[str, Any]], target_tokens: float
) -> tuple[torch.Tensor, float]:
    """Accumulate the gradient of the global batch's mean token loss (`target_tokens`: of every rank) over
    this rank's micro-batches; return their summed loss and the seconds spent copying them to the device."""
    config, place = run.config, run.place
    loss_sum = torch.zeros((), device=place.device)
    copying = 0.0
    for index, batch in enumerate(micro):
        began = time.perf_counter()
        inputs = _to_device(run, batch)
        copying += time.perf_counter() - began
        with gradient_sync(run.wrapped, last=index == len(micro) - 1):
            with _autocast(run), attention(config.attention):
                loss = run.wrapped(*inputs)
            (loss * place.world / max(target_tokens, 1.0)).backward()
        loss_sum += loss.detach()
    return loss_sum, copying


def _to_device(run: Run, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, labels, pixels) of a micro-batch on the device: uint8 images normalized there,
    raw JPEGs decoded there with nvJPEG."""
    device, size = run.place.device, run.image_size
    ids, labels = (batch[k].to(device, non_blocking=True) for k in ("input_ids", "labels"))
    if run.gpu_decode:
        pixels = images.finish_on_device(batch["images"], size, device)
    elif len(batch["images"]):
        pixels = images.normalize(batch["images"].to(device, non_blocking=True))
    else:
        pixels = torch.empty(0, 3, size, size, device=device)
    return ids, labels, pixels


def _autocast(run: Run) -> AbstractContextManager[Any]:
    if run.place.cuda and run.config.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _optimizer_step(run: Run, stepped: bool) -> tuple[float, torch.Tensor]:
    """Clip (`--grad-clip 0`: measure only), step the weights unless the global batch had nothing to
    learn (`stepped` false), advance the schedule; return the step's learning rate and gradient norm."""
    clip = run.config.grad_clip if run.config.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(run.wrapped.parameters(), clip)
    if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP
        grad_norm = grad_norm.full_tensor()
    lr = run.scheduler.get_last_lr()[0]
    if stepped:
        run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return lr, grad_norm


def _checkpoint_due(save_every: int, step: int, last_step: int) -> bool:
    """At the last step, and every `save_every` steps (0: at the last only; -1: never)."""
    return save_every >= 0 and (step == last_step or (save_every > 0 and step % save_every == 0))


def _save(run: Run, step: int, totals: dict[str, int]) -> None:
    epoch, index = divmod(step, run.steps_per_epoch)
    trainer = {
        "step": step,
        "totals": totals,
        "data_position": {"epoch": epoch, "micro_batch": index * run.accum},
        "layout": run.layout,
        "config": {k: str(v) for k, v in asdict(run.config).items()},
    }
    save_checkpoint(step_folder(run.config.out, step), run.wrapped, run.optimizer, run.scheduler, trainer)


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


def _load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """A tokenizer folder (AutoTokenizer), or a Hugging Face `tokenizer.json` file."""
    if path.is_file():
        return PreTrainedTokenizerFast(tokenizer_file=str(path))
    if path.is_dir():
        return AutoTokenizer.from_pretrained(path)
    raise BridgeError(f"--tokenizer: {path} is neither a tokenizer folder nor a tokenizer.json file")


def _enable_activation_checkpointing(model: nn.Module) -> None:
    """Non-reentrant recompute of every layer; transformers ≥ 5.24 renamed the method."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _param_groups(model: nn.Module, weight_decay: float, decay_1d: bool) -> list[dict[str, Any]]:
    """Weight decay on every parameter, as V1-2's DeepSpeed AdamW; without `decay_1d`, none on
    biases and norm weights (1-D parameters)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if decay_1d:
        return [{"params": trainable, "weight_decay": weight_decay}]
    decay = [p for p in trainable if p.ndim >= 2]
    rest = [p for p in trainable if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
