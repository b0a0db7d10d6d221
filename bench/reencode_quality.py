"""Re-encoding to `max_side`: quality and time of this tree's `apply_policy` against an earlier
commit's `dataprep/images.py` (`--old`, e.g. e9bbb19's: Pillow's Lanczos) on photo-like JPEGs of
several sizes (and a PNG). Quality is measured on the decoded outputs against a reference resize:
the full-size decode, resampled with a Lanczos filter in 64-bit floats per channel (no 8-bit
rounding, no JPEG step); PSNR (RGB) and SSIM (luma, 11-pixel Gaussian window, σ 1.5). Time: the
two versions run the same images in turn, `--reps` times; the fastest repetition counts (the least
disturbed by other load). Prints JSON lines and a table.

    git show e9bbb19:dataprep/images.py > /tmp/old_images.py
    .venv/bin/python bench/reencode_quality.py --old /tmp/old_images.py   # ~2 min
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import PhotoMaker, emit, machine, table
from PIL import Image

from dataprep.images import apply_policy
from dataprep.recipe.model import ImagePolicy

INPUTS = [
    ("JPEG", 500, 375),
    ("JPEG", 640, 480),
    ("JPEG", 1500, 2250),
    ("JPEG", 4000, 3000),
    ("PNG", 640, 480),
]
"""(format, width, height): photos of 448-ish, issue 14's, SAM-like and camera sizes; a PNG."""


def load_module(path: Path, name: str) -> Any:
    """Another version of `dataprep/images.py`, imported under `name` (its imports resolve here)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def reference(data: bytes, size: tuple[int, int]) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    channels = [channel.convert("F").resize(size, Image.Resampling.LANCZOS) for channel in image.split()]
    return np.stack([np.asarray(channel, dtype=np.float64) for channel in channels], axis=-1)


def photos(fmt: str, width: int, height: int, count: int) -> list[bytes]:
    make = PhotoMaker(random.Random(width), width, height)
    if fmt == "JPEG":
        return [make() for _ in range(count)]
    converted = []
    for data in (make() for _ in range(count)):
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).save(buffer, format=fmt)
        converted.append(buffer.getvalue())
    return converted


def seconds_per_image(function: Any, images: list[bytes], policy: ImagePolicy) -> float:
    started = time.perf_counter()
    for data in images:
        function(data, policy)
    return (time.perf_counter() - started) / len(images)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a - b) ** 2)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    luma = np.array([0.299, 0.587, 0.114])
    x, y = a @ luma, b @ luma

    taps = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    taps /= taps.sum()

    def blur(plane: np.ndarray) -> np.ndarray:  # separable 11-tap Gaussian, edges reflected
        for axis in (0, 1):
            padded = np.pad(plane, [(5, 5) if a == axis else (0, 0) for a in (0, 1)], mode="reflect")
            length = plane.shape[axis]
            plane = sum(w * padded.take(range(k, k + length), axis=axis) for k, w in enumerate(taps))
        return plane

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return float(np.mean(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="a copy of the baseline's dataprep/images.py")
    parser.add_argument("--count", type=int, default=20, help="images per input (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (default: %(default)s)")
    parser.add_argument("--max-side", type=int, default=448, help="(default: %(default)s)")
    args = parser.parse_args()
    old = load_module(args.old, "old_images")
    policy = ImagePolicy(max_side=args.max_side, format="jpeg", quality=95)
    codes = {"old": old.apply_policy, "new": apply_policy}
    emit(
        {
            "kind": "setup",
            "machine": machine(),
            "count": args.count,
            "reps": args.reps,
            "max_side": args.max_side,
        }
    )
    rows = []
    for fmt, width, height in INPUTS:
        images = photos(fmt, width, height, args.count)
        seconds: dict[str, list[float]] = {name: [] for name in codes}
        for _ in range(args.reps):
            for name, function in codes.items():
                seconds[name].append(seconds_per_image(function, images, policy))
        outputs = {name: [function(data, policy) for data in images] for name, function in codes.items()}
        for name in codes:
            scores = []
            for data, output in zip(images, outputs[name], strict=True):
                decoded = np.asarray(Image.open(io.BytesIO(output.data)).convert("RGB"), dtype=np.float64)
                wanted = reference(data, (output.width, output.height))
                scores.append((psnr(decoded, wanted), ssim(decoded, wanted)))
            row = {
                "kind": "result",
                "input": f"{fmt} {width}x{height}",
                "code": name,
                "ms_per_image": round(min(seconds[name]) * 1000, 2),
                "psnr_db": round(statistics.mean(score[0] for score in scores), 4),
                "ssim": round(statistics.mean(score[1] for score in scores), 6),
                "identical_to_old": None,
            }
            if name == "new":
                row["identical_to_old"] = all(
                    a.data == b.data for a, b in zip(outputs["new"], outputs["old"], strict=True)
                )
            emit(row)
            rows.append(row)
    print(
        table(rows, ["input", "code", "ms_per_image", "psnr_db", "ssim", "identical_to_old"]), file=sys.stderr
    )


if __name__ == "__main__":
    main()
