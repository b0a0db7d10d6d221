"""The baseline of bench/build_throughput.py: the converter a user would write by hand. One process
reads an InternVL/LLaVA jsonl, checks each image with PIL (verify, then a full load), and writes
webdataset shards of `--shard-size` samples (`<key>.jpg` + `<key>.json`) with webdataset.TarWriter.
No rejects file, no resume, no mixing, tar members in webdataset's default order and metadata."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import webdataset as wds
from PIL import Image


def convert(annotation: Path, image_root: Path, out: Path, shard_size: int) -> tuple[int, int]:
    """Write `out/data-NNNNNN.tar`; return (samples written, records skipped)."""
    out.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    writer: wds.TarWriter | None = None
    with annotation.open() as lines:
        for line in lines:
            record = json.loads(line)
            data = (image_root / record["image"]).read_bytes()
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.verify()
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
            except (OSError, SyntaxError, ValueError):
                skipped += 1
                continue
            if written % shard_size == 0:
                if writer is not None:
                    writer.close()
                writer = wds.TarWriter(str(out / f"data-{written // shard_size:06d}.tar"))
            assert writer is not None
            writer.write({"__key__": f"{written:09d}", "jpg": data, "json": record})
            written += 1
    if writer is not None:
        writer.close()
    return written, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("annotation", type=Path, help="the .jsonl file")
    parser.add_argument("image_root", type=Path, help="folder the records' image paths are relative to")
    parser.add_argument("out", type=Path, help="output folder for the shards")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    args = parser.parse_args()
    written, skipped = convert(args.annotation, args.image_root, args.out, args.shard_size)
    print(json.dumps({"written": written, "skipped": skipped}))


if __name__ == "__main__":
    main()
