"""CPU image preprocessing (the GPU/nvJPEG path needs torchvision + CUDA and is not run here)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from train_bridge.images import IMAGENET_MEAN, IMAGENET_STD, prepare, preprocess_cpu


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_rgb_bicubic_resize_and_imagenet_normalisation() -> None:
    white = preprocess_cpu(encoded(Image.new("L", (50, 30), 255), "PNG"), 28)
    assert white.shape == (3, 28, 28) and white.dtype == torch.float32
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert white.mean(dim=(1, 2)).tolist() == pytest.approx(expected, abs=1e-5)
    gradient = Image.linear_gradient("L").convert("RGB").resize((64, 40))
    ours = preprocess_cpu(encoded(gradient, "PNG"), 16)
    pil = torch.tensor(
        list(gradient.resize((16, 16), Image.Resampling.BICUBIC).getdata()), dtype=torch.float32
    )
    pil = pil.view(16, 16, 3).permute(2, 0, 1) / 255
    assert ours * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1) == (
        pytest.approx(pil, abs=1e-5)
    )


def test_gpu_decode_hands_jpeg_bytes_through_and_decodes_the_rest() -> None:
    jpeg = encoded(Image.new("RGB", (20, 20), "red"), "JPEG")
    raw = prepare(jpeg, 28, gpu_decode=True)
    assert raw.dtype == torch.uint8 and bytes(raw.numpy()) == jpeg
    png = prepare(encoded(Image.new("RGB", (20, 20), "red"), "PNG"), 28, gpu_decode=True)
    assert png.shape == (3, 28, 28)
    assert prepare(jpeg, 28, gpu_decode=False).shape == (3, 28, 28)


def test_pixels_wider_than_8_bits_are_refused_not_clipped_to_white() -> None:
    buffer = io.BytesIO()  # a 16-bit grayscale ramp: Pillow's RGB conversion makes it 99.6 % white
    Image.fromarray(np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)).save(buffer, "PNG")
    with pytest.raises(ValueError, match="I;16 pixels: the shard contract has 8 bits per channel"):
        preprocess_cpu(buffer.getvalue(), 28)
