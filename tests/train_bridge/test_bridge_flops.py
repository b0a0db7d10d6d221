"""Model FLOPs: the vision side matches torch's own count; the output projection counts scored tokens
only; the peak of known GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train_bridge.flops import FlopCounter, peak_flops
from train_bridge.model import add_special_tokens, load_model

from helpers.training import first_batch


def test_image_flops_match_an_independent_count(tokenizer) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

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


def test_flops_count_the_output_projection_on_scored_tokens_only(manifest_path: Path, tokenizer) -> None:
    add_special_tokens(tokenizer)
    count = FlopCounter(load_model("tiny", tokenizer, image_size=28))
    batch = first_batch(manifest_path, tokenizer)
    fewer = dict(batch, labels=batch["labels"].clone())
    scored = torch.nonzero(fewer["labels"][:, 1:] != -100)[0]
    fewer["labels"][scored[0], scored[1] + 1] = -100
    assert count(batch) - count(fewer) == 6 * count.head_params
    no_images = dict(batch, images=batch["images"][:0])
    assert count(no_images) < count(batch)


@pytest.mark.parametrize(
    ("name", "tflops"),
    [("NVIDIA H100 PCIe", 756), ("NVIDIA H100 NVL", 835), ("NVIDIA H100 80GB HBM3", 989), ("Tesla T4", 0)],
)
def test_the_peak_is_given_or_known_by_the_gpus_name(monkeypatch, name: str, tflops: float) -> None:
    assert peak_flops(0.0, torch.device("cpu")) == 0.0  # no MFU on a CPU unless a peak is given
    assert peak_flops(2.5, torch.device("cpu")) == 2.5e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: name)
    assert peak_flops(0.0, torch.device("cuda", 0)) == tflops * 1e12
    assert peak_flops(100.0, torch.device("cuda", 0)) == 100e12
