"""Image preprocessing: RGB, square bicubic resize, ImageNet mean/std.

The CPU path (PIL) is the default and runs in DataLoader workers, which hand over uint8 pixels
(`normalize` makes the model's input on the device). A JPEG of at least 3× the target size on both
sides is decoded at reduced DCT scale (`Image.draft`: 1/2, 1/4 or 1/8, the smallest whose result
still has both sides ≥ 1.5× the target, so the bicubic resize still averages over several decoded
pixels) before the same resize; `exact=True` decodes every pixel (docs/train_bridge.md states the
difference). Truncated and corrupt JPEGs fail the same way either way. With `gpu_decode`, JPEG bytes
are passed through as uint8 tensors and decoded + resized on the GPU (torchvision nvJPEG) in the
training process; other formats are still decoded on the CPU. torchvision is an optional import.
"""

from __future__ import annotations

import io

import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
JPEG_MAGIC = b"\xff\xd8\xff"

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)
_SCALE = 1 / (255 * _STD)  # (x / 255 - mean) / std  ==  x * _SCALE + _SHIFT, in one pass
_SHIFT = -_MEAN / _STD


def preprocess_cpu(data: bytes, size: int, exact: bool = False) -> torch.Tensor:
    """Decode, convert to RGB, resize to size×size bicubic → uint8 (3, size, size), a quarter of the
    float bytes to hand from a worker; `normalize` makes the model's input from it (on the device).
    A large JPEG is decoded at reduced scale unless `exact` (see the module docstring)."""
    with Image.open(io.BytesIO(data)) as image:
        if not exact:
            margin = -(-3 * size // 2)  # JPEG only; a no-op for other formats and small JPEGs
            image.draft("RGB", (margin, margin))
        return preprocess_pil(image, size)


def preprocess_pil(image: Image.Image, size: int) -> torch.Tensor:
    """The same preprocessing, from an opened PIL image. 16-bit, 32-bit and float pixels
    (outside the shard contract's 8 bits per channel) are refused: Pillow would clip them to white."""
    if image.mode.startswith(("I", "F")):
        raise ValueError(f"{image.mode} pixels: the shard contract has 8 bits per channel")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    resized = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return (
        torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1)
    )


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) → float32 (x / 255 - mean) / std, on the pixels' device, in place on one
    float copy."""
    return pixels.to(torch.float32).mul_(_SCALE.to(pixels.device)).add_(_SHIFT.to(pixels.device))


def is_jpeg(data: bytes) -> bool:
    return data[:3] == JPEG_MAGIC


def prepare(data: bytes, size: int, gpu_decode: bool, exact: bool = False) -> torch.Tensor:
    """What a worker hands over for one image: raw JPEG bytes (uint8, 1-D) or resized pixels (uint8,
    3-D) for `normalize`."""
    if gpu_decode and is_jpeg(data):
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return preprocess_cpu(data, size, exact)


def gpu_decode_available() -> bool:
    """True when torchvision imports and CUDA is present (nvJPEG decoding possible)."""
    if not torch.cuda.is_available():
        return False
    try:
        import torchvision.io  # noqa: F401
    except Exception:
        return False
    return True


def finish_on_device(items: list[torch.Tensor], size: int, device: torch.device) -> torch.Tensor:
    """Stack prepared images on `device`, normalized; raw JPEG bytes are decoded there with nvJPEG."""
    if not items:
        return torch.empty(0, 3, size, size, device=device)
    out: list[torch.Tensor | None] = [None] * len(items)
    raw = [i for i, item in enumerate(items) if item.dim() == 1]
    if raw:
        from torchvision.io import ImageReadMode, decode_jpeg

        decoded = decode_jpeg([items[i] for i in raw], mode=ImageReadMode.RGB, device=device)
        mean, std = _MEAN.to(device), _STD.to(device)
        for i, image in zip(raw, decoded, strict=True):
            resized = F.interpolate(
                image.unsqueeze(0).float(),
                size=(size, size),
                mode="bicubic",
                antialias=True,
                align_corners=False,
            )
            out[i] = ((resized[0].clamp(0, 255) / 255.0) - mean) / std
    for i, item in enumerate(items):
        if out[i] is None:
            out[i] = normalize(item.to(device, non_blocking=True))
    return torch.stack(out)  # type: ignore[arg-type]
