"""Locating every member of a shard: scanning its tar headers (the baseline) vs reading its sidecar
index. Writes one shard of `--samples` samples (json + an image-sized blob each), then times both
ways, interleaved, page cache warm; prints medians and the ratio.

    python bench/shard_index.py [--samples 2000] [--image-bytes 80000] [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from dataprep.contract.sample import ShardSample, Turn
from dataprep.contract.shards import member_locations, tar_locations, write_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--image-bytes", type=int, default=80_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        shard = Path(folder) / "bench-000000.tar"
        turns = [Turn("human", "<image>\nq"), Turn("gpt", "a")]
        write_samples(
            shard,
            (
                (f"000000_{index:06d}", ShardSample("bench", str(index), ["jpg"], [[1, 1]], turns), [blob])
                for index in range(args.samples)
                for blob in [os.urandom(args.image_bytes)]
            ),
        )
        timings: dict[str, list[float]] = {"tar headers": [], "sidecar index": []}
        for _ in range(args.reps):
            for name, locate in (("tar headers", tar_locations), ("sidecar index", member_locations)):
                began = time.perf_counter()
                found = locate(shard)
                timings[name].append(time.perf_counter() - began)
                assert len(found) == 2 * args.samples, name
        baseline = statistics.median(timings["tar headers"])
        for name, values in timings.items():
            median = statistics.median(values)
            print(f"{name:14} {median * 1000:8.1f} ms  ({baseline / median:.1f}× the header scan's speed)")


if __name__ == "__main__":
    main()
