"""What a step counts (summed over ranks in one collective), the record it logs, and `metrics.jsonl`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

import torch

from train_bridge.distributed import all_reduce
from train_bridge.template import IGNORE_INDEX


@dataclass
class StepCounts:
    """A step's counters, summed over its micro-batches; `summed` adds them up over every rank."""

    target_tokens: float = 0.0  # scored labels
    loss_sum: float = 0.0  # summed token loss
    tokens: float = 0.0  # real (non-pad) tokens, image tokens included
    dropped: float = 0.0  # samples the encoder dropped (overlong, or nothing to learn)
    truncated: float = 0.0
    token_slots: float = 0.0  # real + pad
    flops: float = 0.0  # model FLOPs (when counted)
    samples: dict[str, float] = field(default_factory=dict)  # trained samples per source

    @classmethod
    def of(
        cls,
        micro: Sequence[dict[str, Any]],
        sources: Sequence[str],
        count_flops: Callable[[dict[str, Any]], float] | None = None,
    ) -> StepCounts:
        """The counters of one rank's micro-batches (`sources`: every source, in the record's order)."""
        counts = cls(samples=dict.fromkeys(sources, 0.0))
        for batch in micro:
            counts.target_tokens += (batch["labels"][:, 1:] != IGNORE_INDEX).sum().item()
            counts.tokens += batch["attention_mask"].sum().item()
            counts.dropped += int(batch["dropped"])
            counts.truncated += int(batch["truncated"])
            counts.token_slots += batch["attention_mask"].numel()
            for name in batch["sources"]:
                counts.samples[name] += 1
            if count_flops:
                counts.flops += count_flops(batch)
        return counts

    def summed(self, device: torch.device) -> StepCounts:
        """The counters of every rank, added up in one all-reduce (float64)."""
        scalars = [f.name for f in fields(self) if f.name != "samples"]
        packed = torch.tensor(
            [getattr(self, name) for name in scalars] + list(self.samples.values()), dtype=torch.float64
        )
        values = all_reduce(packed.to(device)).cpu().tolist()
        return StepCounts(
            **dict(zip(scalars, values, strict=False)),
            samples=dict(zip(self.samples, values[len(scalars) :], strict=True)),
        )


def digest(keys: list[str]) -> str:
    """Of a global batch's samples, in any order (ranks and micro-batches split it differently)."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def step_record(
    *,
    step: int,
    epoch: int,
    counts: StepCounts,
    lr: float,
    grad_norm: float,
    elapsed: float,
    waited: float,
    totals: dict[str, int],
    data: str,
    peak: float,
) -> dict[str, Any]:
    """One line of `metrics.jsonl`, from the step's counters summed over every rank (`totals`: the run's
    dropped and truncated samples so far; `data`: the digest of the global batch's keys; `peak`: the FLOP/s
    of all devices together, for the MFU, 0: unknown)."""
    record = {
        "step": step,
        "epoch": epoch,
        "loss": counts.loss_sum / counts.target_tokens if counts.target_tokens else None,
        "lr": lr,
        "grad_norm": grad_norm,
        "target_tokens": int(counts.target_tokens),
        "tokens_per_s": counts.tokens / elapsed,
        "pad_fraction": 1.0 - counts.tokens / max(counts.token_slots, 1.0),
        "samples_per_s": sum(counts.samples.values()) / elapsed,
        "samples_per_s_by_source": {name: n / elapsed for name, n in counts.samples.items()},
        "data_wait": waited / elapsed,
        "step_time": elapsed,
        "dropped": totals["dropped"],
        "truncated": totals["truncated"],
        "data": data,
    }
    if peak:
        record["mfu"] = counts.flops / (elapsed * peak)
    return record


def open_metrics(path: Path, step: int) -> IO[str]:
    """Append to the metrics file, first dropping lines of steps after `step` (a run that died after
    its last checkpoint and is resumed from it logs those steps again)."""
    if path.exists():
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if json.loads(line)["step"] <= step]
        if kept != lines:
            path.write_text("".join(kept))
    return open(path, "a")
