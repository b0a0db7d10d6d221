"""Model FLOPs of a micro-batch and the device's peak, for the MFU of each step."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from train_bridge.model import image_geometry
from train_bridge.template import IGNORE_INDEX

PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}
"""Dense bf16 peaks; the first name found in the device's name wins (variants before the family)."""


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


def peak_flops(peak_tflops: float, device: torch.device) -> float:
    """FLOP/s of one device: `peak_tflops` when given, else the known bf16 peak of a GPU; 0: unknown."""
    if peak_tflops:
        return peak_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS.items() if key in name), 0.0)
    return 0.0
