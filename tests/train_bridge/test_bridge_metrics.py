"""A step's counters by name, summed over ranks in one all-reduce; its record; `metrics.jsonl` on resume."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from train_bridge.distributed import process_group
from train_bridge.metrics import StepCounts, digest, open_metrics, step_record


def micro_batch(labels: list[list[int]], mask: list[list[int]], sources: list[str], **extra) -> dict:
    return {
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
        "sources": sources,
        "dropped": extra.get("dropped", 0),
        "truncated": extra.get("truncated", 0),
    }


def test_counts_of_a_steps_micro_batches_are_named_and_summed_in_one_collective() -> None:
    micro = [
        micro_batch([[-100, 5, 6, -100], [-100, -100, 7, -100]], [[1, 1, 1, 1], [1, 1, 1, 0]], ["a", "b"]),
        micro_batch([[-100, -100, 9, -100]], [[1, 1, 1, 0]], ["a"], dropped=1, truncated=1),
    ]
    counts = StepCounts.of(micro, ["a", "b", "c"], count_flops=lambda batch: 10.0 * len(batch["sources"]))
    assert counts == StepCounts(
        target_tokens=4,  # labels are scored from the second position on
        tokens=10,
        dropped=1,
        truncated=1,
        token_slots=12,
        flops=30.0,
        samples={"a": 2, "b": 1, "c": 0},  # every source, in the given order
    )
    counts.loss_sum = 2.5
    assert counts.summed(torch.device("cpu")) == counts  # no process group: this rank's
    with process_group("ddp"):  # a one-member gloo group: through the collective
        summed = counts.summed(torch.device("cpu"))
    assert summed == counts and list(summed.samples) == ["a", "b", "c"]
    assert StepCounts.of(micro, ["a", "b"]).flops == 0.0  # not counted without a counter


def record_of(counts: StepCounts, peak: float = 0.0) -> dict:
    """Step 3 of epoch 0, 2 s of which 0.5 s waiting, after 1 dropped and 2 truncated samples."""
    totals = {"dropped": 1, "truncated": 2}
    return step_record(
        step=3, epoch=0, counts=counts, lr=1e-5, grad_norm=0.5, elapsed=2.0, waited=0.5, totals=totals,
        data="abc", peak=peak,
    )  # fmt: skip


def test_a_record_has_the_metrics_fields_in_order_and_no_loss_without_targets() -> None:
    counts = StepCounts(
        target_tokens=4, loss_sum=6.0, tokens=30, token_slots=40, flops=8e12, samples={"a": 3, "b": 1}
    )
    assert list(record_of(counts).items()) == [
        ("step", 3),
        ("epoch", 0),
        ("loss", 1.5),  # per target token
        ("lr", 1e-5),
        ("grad_norm", 0.5),
        ("target_tokens", 4),
        ("tokens_per_s", 15.0),
        ("pad_fraction", 0.25),
        ("samples_per_s", 2.0),
        ("samples_per_s_by_source", {"a": 1.5, "b": 0.5}),
        ("data_wait", 0.25),
        ("step_time", 2.0),
        ("dropped", 1),
        ("truncated", 2),
        ("data", "abc"),
    ]
    with_peak = record_of(counts, peak=16e12)  # of all devices together
    assert list(with_peak)[-1] == "mfu" and with_peak["mfu"] == 0.25
    nothing = record_of(StepCounts(samples={"a": 0}), peak=1e12)
    assert nothing["loss"] is None and nothing["pad_fraction"] == 1.0 and nothing["mfu"] == 0.0


def test_the_digest_of_a_global_batch_ignores_how_it_was_split() -> None:
    assert digest(["b", "a", "c"]) == digest(["c", "b", "a"]) != digest(["a", "b"])


def test_a_resumed_run_drops_the_lines_of_steps_after_its_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    with open_metrics(path, 0) as out:
        out.write("".join(json.dumps({"step": step}) + "\n" for step in (1, 2, 3)))
    with open_metrics(path, 2) as out:
        out.write(json.dumps({"step": 3, "again": True}) + "\n")
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"step": 1},
        {"step": 2},
        {"step": 3, "again": True},
    ]
