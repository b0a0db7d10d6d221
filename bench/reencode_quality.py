"""Re-encoding to `max_side`: quality and time of this tree's `apply_policy` against an earlier
commit's `dataprep/images.py` (`--old`, e.g. main's: full decode, then Lanczos) on photo-like JPEGs of several sizes.
Quality is measured on the decoded outputs against a reference resize: the full-size decode,
resampled with a Lanczos filter in 64-bit floats per channel (no 8-bit rounding, no JPEG step);
PSNR (RGB) and SSIM (luma, 11-pixel Gaussian window, σ 1.5). Prints JSON lines and a table.

    git show b216b43:dataprep/images.py > /tmp/old_images.py
    .venv/bin/python bench/reencode_quality.py --old /tmp/old_images.py   # ~1 min
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

SIZES = [(640, 480), (1500, 2250), (4000, 3000)]


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
    parser.add_argument(
        "--old", type=Path, required=True, help="a tree holding the baseline dataprep/images.py"
    )
    parser.add_argument("--count", type=int, default=20, help="images per size (default: %(default)s)")
    parser.add_argument("--max-side", type=int, default=448, help="(default: %(default)s)")
    args = parser.parse_args()
    old = load_module(args.old, "old_images")
    policy = ImagePolicy(max_side=args.max_side, format="jpeg", quality=95)
    emit({"kind": "setup", "machine": machine(), "count": args.count, "max_side": args.max_side})
    rows = []
    for width, height in SIZES:
        make = PhotoMaker(random.Random(width), width, height)
        images = [make() for _ in range(args.count)]
        for name, function in (("old", old.apply_policy), ("new", apply_policy)):
            started = time.perf_counter()
            outputs = [function(data, policy) for data in images]
            seconds = (time.perf_counter() - started) / len(images)
            scores = []
            for data, output in zip(images, outputs, strict=True):
                decoded = np.asarray(Image.open(io.BytesIO(output.data)).convert("RGB"), dtype=np.float64)
                wanted = reference(data, (output.width, output.height))
                scores.append((psnr(decoded, wanted), ssim(decoded, wanted)))
            row = {
                "kind": "result",
                "input": f"{width}x{height}",
                "code": name,
                "ms_per_image": round(seconds * 1000, 2),
                "psnr_db": round(statistics.mean(score[0] for score in scores), 3),
                "ssim": round(statistics.mean(score[1] for score in scores), 5),
                "identical_to_old": None,
            }
            if name == "new":
                row["identical_to_old"] = all(
                    a.data == b.data
                    for a, b in zip(outputs, [old.apply_policy(d, policy) for d in images], strict=True)
                )
            emit(row)
            rows.append(row)
    print(
        table(rows, ["input", "code", "ms_per_image", "psnr_db", "ssim", "identical_to_old"]), file=sys.stderr
    )


if __name__ == "__main__":
    main()
