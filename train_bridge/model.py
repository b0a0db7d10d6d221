"""The model: transformers' InternVLForConditionalGeneration from a local path or a named preset.

Presets build random weights with the shapes of a known model: `tiny` (tests), `small`
(InternViT-300M + Qwen2-0.5B shapes, GPU throughput checks), `v1_2` (InternViT-6B + Yi-34B shapes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import InternVLConfig, InternVLForConditionalGeneration, PreTrainedTokenizerBase

from train_bridge.errors import BridgeError
from train_bridge.template import IMG_CONTEXT, SPECIAL_TOKENS, image_tokens_per_image

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "vision": {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        "text": {
            "model_type": "qwen2",
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 128,
            "max_position_embeddings": 4096,
        },
    },
    "small": {
        "vision": {
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "intermediate_size": 4096,
        },
        "text": {
            "model_type": "qwen2",
            "hidden_size": 896,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "intermediate_size": 4864,
            "max_position_embeddings": 32768,
            "rope_theta": 1000000.0,
            "vocab_size": 151936,
        },
    },
    "v1_2": {
        "vision": {
            "hidden_size": 3200,
            "num_hidden_layers": 45,
            "num_attention_heads": 25,
            "intermediate_size": 12800,
            "use_qk_norm": True,
            "norm_type": "rms_norm",
        },
        "text": {
            "model_type": "llama",
            "hidden_size": 7168,
            "num_hidden_layers": 60,
            "num_attention_heads": 56,
            "num_key_value_heads": 8,
            "intermediate_size": 20480,
            "max_position_embeddings": 4096,
            "rope_theta": 5000000.0,
            "rms_norm_eps": 1e-5,
            "vocab_size": 64000,
        },
        "tie_word_embeddings": False,
    },
}


def add_special_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add the ChatML and image tokens the tokenizer lacks; return how many were added."""
    vocab = tokenizer.get_vocab()
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|im_end|>"
    return len(missing)


def preset_config(name: str, vocab_size: int, image_size: int = 448, patch_size: int = 14) -> InternVLConfig:
    """The InternVLConfig of a preset; the vocabulary is at least `vocab_size`."""
    step = patch_size * 2  # a whole number of patches, pixel-shuffled by 0.5
    if image_size < step or image_size % step:
        raise BridgeError(f"--image-size {image_size} must be a positive multiple of {step}")
    preset = PRESETS[name]
    text = dict(preset["text"])
    text["vocab_size"] = max(text.get("vocab_size", 0), vocab_size)
    vision = dict(preset["vision"], image_size=image_size, patch_size=patch_size)
    config = InternVLConfig(
        vision_config=vision,
        text_config=text,
        downsample_ratio=0.5,
        image_seq_length=image_tokens_per_image(image_size, patch_size, 0.5),
        tie_word_embeddings=preset.get("tie_word_embeddings", text["model_type"] == "qwen2"),
    )
    return config


def load_model(
    spec: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    image_size: int = 448,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> InternVLForConditionalGeneration:
    """A local checkpoint path or a preset name → model whose embeddings and `image_token_id`
    match the tokenizer (special tokens must already be added)."""
    if spec in PRESETS:
        torch.manual_seed(seed)
        config = preset_config(spec, len(tokenizer), image_size=image_size)
        with torch.device(device):
            model = InternVLForConditionalGeneration(config).to(dtype)
    elif Path(spec).is_dir():
        model = InternVLForConditionalGeneration.from_pretrained(spec, dtype=dtype, device_map=None).to(
            device
        )
    else:
        raise BridgeError(f"--model: {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a local folder")
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.image_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    return model


def transformer_layers(model: InternVLForConditionalGeneration) -> list[torch.nn.Module]:
    """The vision tower's and the language model's transformer layers: what `--compile` compiles and
    FSDP shards one by one."""
    inner = model.model
    return [*inner.vision_tower.encoder.layer, *inner.language_model.layers]


def image_geometry(model: InternVLForConditionalGeneration) -> tuple[int, int]:
    """(input image size, image tokens per image) of a model."""
    vision = model.config.vision_config
    size = vision.image_size[0] if isinstance(vision.image_size, list | tuple) else vision.image_size
    patch = vision.patch_size[0] if isinstance(vision.patch_size, list | tuple) else vision.patch_size
    return size, image_tokens_per_image(size, patch, model.config.downsample_ratio)
