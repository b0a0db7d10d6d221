"""Decontamination: precision and recall of the thresholds on planted overlaps, and the join's cost.

1. `dataprep.fixtures.overlaps` writes `--items` eval items (charts and labelled diagrams in a
   VLMEvalKit TSV) and a training source holding, per item, its picture re-encoded as JPEG, resized,
   cropped by 3 px, in grayscale and in the other format (PNG↔JPEG), two near-misses (another chart of
   the same template / the same diagram with other letters, and the template's question about another
   entity) and the eval question with its answer on an unrelated photo, plus unrelated photos.
2. A real build of it (`mode: drop`, the recipe's default thresholds, in process): what was dropped is
   compared with what was planted; the stage times give the cost next to normalizing.
3. A sweep of the thresholds over the same fingerprints (pHash distance, picture difference, n-gram
   share), computed as the match job does.
4. The hash join at the V1-2 scale: 1.27 M random 64-bit hashes against 100 k within 6 bits (train ×
   eval, the default `image_distance`) and against themselves within 3 bits (duplicates, the default
   `duplicate_distance`): seconds and pairs found.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dataprep.engine.build import build
from dataprep.engine.runner import InProcessRunner
from dataprep.engine.settings import BuildSettings
from dataprep.fingerprints import image_fingerprint, picture_difference
from dataprep.fixtures import overlaps as planted
from dataprep.overlaps import QuestionIndex, distances, hash_array, near_pairs
from dataprep.recipe.load import load_recipe


def emit(kind: str, **fields: object) -> None:
    print(json.dumps({"kind": kind, **fields}), flush=True)


def build_run(root: Path, facts: dict) -> None:
    """The real build: dropped ids against the planted ones."""
    recipe_file = root / "recipe.yaml"
    recipe_file.write_text(planted.recipe_yaml(root, root / "out", "drop", eval_set="planted"))
    manifest = build(
        load_recipe(recipe_file), BuildSettings(out=root / "out", progress=False), InProcessRunner()
    )
    lines = (root / "out" / "rejects.jsonl").read_text().splitlines()
    dropped = {json.loads(line)["id"] for line in lines if json.loads(line)["reason"] == "eval_overlap"}
    expected = set(facts["expected"])
    found = dropped & expected
    assert manifest.build is not None
    emit(
        "build",
        planted=len(expected),
        found=len(found),
        recall=round(len(found) / len(expected), 4),
        false=sorted(dropped - expected),
        precision=round(len(found) / len(dropped), 4) if dropped else None,
        missed=sorted(expected - dropped),
        stages=manifest.build.stages,
    )
    print("| stage | seconds |\n|---|---|", file=sys.stderr)
    for stage, seconds in manifest.build.stages.items():
        print(f"| {stage} | {seconds} |", file=sys.stderr)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def sweep(root: Path, facts: dict) -> None:
    """Per transform: the fraction found at each threshold; near-misses and unrelated images found."""
    with open(root / "evals" / planted.EVAL_FILE, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    evals = [decoded(base64.b64decode(row["image"])) for row in rows]
    eval_prints = [image_fingerprint(image) for image in evals]
    train = {path.stem: decoded(path.read_bytes()) for path in sorted((root / "train" / "images").iterdir())}
    train_prints = {key: image_fingerprint(image) for key, image in train.items()}
    keys = list(train)
    p_train = hash_array(train_prints[key].phash for key in keys)
    d_train = hash_array(train_prints[key].dhash for key in keys)
    p_eval = hash_array(print_.phash for print_ in eval_prints)
    d_eval = hash_array(print_.dhash for print_ in eval_prints)
    ours, theirs = near_pairs(p_train, p_eval, 7)
    candidates = []
    for a, b in zip(ours, theirs, strict=True):
        bits = int(distances(p_train[a], p_eval[b]))
        dbits = int(distances(d_train[a], d_eval[b]))
        candidates.append((keys[a], int(b), bits, dbits, picture_difference(train[keys[a]], evals[b])))
    groups = {how: [k for k, v in facts["expected"].items() if v[2] == how] for how in planted.TRANSFORMS}
    groups["near_miss"] = list(facts["near_misses"])
    groups["unrelated"] = [key for key in keys if key.startswith("unrelated") or key.endswith("question")]
    print("\n| pHash ≤ | picture ≤ | " + " | ".join(groups) + " |", file=sys.stderr)
    print("|---" * (len(groups) + 2) + "|", file=sys.stderr)
    for max_bits in (4, 6, 7):
        for max_picture in (0.08, 0.12, 0.16, 0.2, 0.3, 1.0):
            hits = {
                key
                for key, item, bits, dbits, picture in candidates
                if bits <= max_bits
                and dbits <= 16
                and picture <= max_picture
                and key.split("-")[0] == str(item)
            }
            shares = {
                name: sum(key in hits for key in members) / len(members) for name, members in groups.items()
            }
            emit("sweep_image", phash=max_bits, picture=max_picture, found=shares)
            cells = " | ".join(f"{share:.3f}" for share in shares.values())
            print(f"| {max_bits} | {max_picture} | {cells} |", file=sys.stderr)
    questions = [(index, row["question"], row["answer"]) for index, row in enumerate(rows)]
    records = [json.loads(line) for line in (root / "train" / "train.jsonl").read_text().splitlines()]
    print("\n| n | share ≥ | question found | other question found |\n|---|---|---|---|", file=sys.stderr)
    for n in (3, 4, 5, 6):
        for share in (0.5, 0.8, 1.0):
            index = QuestionIndex.of(questions, n)
            found = {}
            for record in records:
                human, gpt = (turn["value"] for turn in record["conversations"])
                found[record["id"]] = bool(index.matches(human, gpt, share))
            planted_q = [key for key in found if key.endswith("-question")]
            other_q = [key for key in found if key.endswith("other_question")]
            recall = sum(found[key] for key in planted_q) / len(planted_q)
            false = sum(found[key] for key in other_q) / len(other_q)
            emit("sweep_text", n=n, share=share, question=recall, other_question=false)
            print(f"| {n} | {share} | {recall:.3f} | {false:.3f} |", file=sys.stderr)


def scale(train: int, evals: int, reps: int) -> None:
    """The multi-index join on uniform random hashes at the mixture's scale."""
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 2**64, size=train, dtype=np.uint64)
    index = rng.integers(0, 2**64, size=evals, dtype=np.uint64)
    joins = {"train_x_eval": (queries, index, 6), "train_x_train": (queries, queries, 3)}
    for name, (first, second, bits) in joins.items():
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            pairs = near_pairs(first, second, bits)
            times.append(time.perf_counter() - started)
        emit(
            "scale",
            join=name,
            rows=[len(first), len(second)],
            bits=bits,
            seconds=min(times),
            pairs=len(pairs[0]),
        )
        print(
            f"| {name} | {len(first):,} × {len(second):,} | ≤ {bits} | {min(times):.1f} s | {len(pairs[0]):,} |",
            file=sys.stderr,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=60, help="eval items planted")
    parser.add_argument(
        "--train", type=int, default=1_270_000, help="training hashes in the scale join (0: no scale join)"
    )
    parser.add_argument("--evals", type=int, default=100_000, help="eval hashes in the scale join")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        facts = planted.generate(root, seed=0, items=args.items)
        emit("setup", items=args.items, planted=len(facts["expected"]), near_misses=len(facts["near_misses"]))
        build_run(root, facts)
        sweep(root, facts)
    if args.train:
        scale(args.train, args.evals, args.reps)


if __name__ == "__main__":
    main()
