"""The source adapters at the real InternVL-Chat-V1-2 scale: what one work unit costs to read.

Writes annotation files of the real sizes in the published layouts (no images are needed to read
them, except that ShareGPT4V's records point at a pool of empty image files, as if present):
DVQA `train_qa.json` (2.32 M questions on 200,000 charts, one JSON list, ~476 MB), a ShareGPT4V
mix665k-like array (665,058 records, ~1.17 GB; `--scale` shrinks it), LLaVA-ZH (157,712 records),
ChartQA train human + augmented (28,299 QAs on 18,317 charts), DocVQA train (39,463 questions on
10,194 pages), one SynthDoG-EN shard (5,952 rows of ~80 KB, ~480 MB, one row group) and a GeoQA+
pickle (72,318 problems with their figures as arrays).

For each source and each tree of `--trees` (folders holding a `dataprep` package), in interleaved
repetitions, a fresh process lists the units with the recipe defaults and reads one (`--unit`) with
`adapter.read(unit)`, counting records: CPU and wall seconds, peak RSS and its growth over the
process after the imports, and a digest of the records (equal digests: the same records). A unit's
reading cost is the same for every unit of a source when each unit streams the whole file; the
summary multiplies by the unit count for the source's total.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from benchlib import add_trees_argument, code_trees, emit, machine, run_in_tree, table, work_folder

CHILD = """
import hashlib, json, resource, sys, time
from pathlib import Path
from dataprep.sources import registry
name, root, options, index = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
adapter_class = registry()[name]
adapter = adapter_class(Path(root), adapter_class.Options(**options))
units = adapter.units()
rss = lambda key: int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) / 1024
before = rss("VmRSS")
digest, records = hashlib.sha256(), 0
wall, cpu = time.perf_counter(), time.process_time()
for record in adapter.read(units[index]):
    records += 1
    digest.update(repr(record).encode("utf-8", "surrogatepass"))
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({"units": len(units), "records": records, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
    "peak_rss_mib": round(rss("VmHWM"), 1), "rss_growth_mib": round(rss("VmHWM") - before, 1),
    "digest": digest.hexdigest()[:16]}))
"""
WORDS = [
    "the",
    "a",
    "of",
    "and",
    "image",
    "shows",
    "person",
    "standing",
    "near",
    "red",
    "car",
    "building",
    "sky",
    "tree",
    "people",
    "street",
    "white",
    "black",
    "large",
    "small",
    "table",
    "dog",
    "cat",
    "man",
    "woman",
    "with",
    "on",
    "in",
    "is",
    "are",
    "there",
    "what",
    "how",
    "many",
    "color",
    "background",
]
HANZI = "图片中的人物站在红色汽车旁边天空树木街道白色黑色大小桌子狗猫男人女人有多少颜色背景"


def words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def write_array(path: Path, records: Any) -> None:
    """A JSON array written element by element (one per line), never held whole."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write("[\n")
        for index, record in enumerate(records):
            handle.write(("" if index == 0 else ",\n") + json.dumps(record, ensure_ascii=False))
        handle.write("\n]")


def dvqa(root: Path, scale: float) -> dict[str, Any]:
    """`train_qa.json`: 11-12 questions per chart (~11.6 on average), the keys of the real file."""
    rng = random.Random(0)
    questions = [
        "How many bars are there?",
        "What is the value of the largest individual bar in the whole chart?",
        "Which algorithm has the smallest accuracy summed across all the datasets?",
        "Is the value of pair smaller than fight?",
        "What is the label of the third bar from the left?",
    ]

    def records() -> Any:
        question_id = 0
        for chart in range(round(200_000 * scale)):
            for _ in range(rng.choice([11, 11, 12, 12, 12])):
                question_id += 1
                box = [] if rng.random() < 0.4 else [round(rng.uniform(0, 400), 2), 355.97, 59.16, 59.16]
                yield {
                    "question": rng.choice(questions),
                    "question_id": question_id,
                    "template_id": rng.choice(["structure", "data", "reasoning"]),
                    "answer": rng.choice(["pair", "fight", "3", "Yes", "No", "cotton"]),
                    "image": f"bar_train_{chart:08d}.png",
                    "answer_bbox": box,
                }

    write_array(root / "train_qa.json", records())
    return {}


def sharegpt4v(root: Path, scale: float) -> dict[str, Any]:
    """mix665k-like: 10% long text-only ShareGPT rows, the rest 1-8-turn image rows (~1.76 KB a
    record, the real file averages 1.85 KB); images from a pool of 5,000 empty files."""
    rng = random.Random(0)
    pool = 5000
    (root / "coco" / "train2017").mkdir(parents=True, exist_ok=True)
    for index in range(pool):
        (root / "coco" / "train2017" / f"{index:012d}.jpg").touch()

    def records() -> Any:
        for index in range(round(665_058 * scale)):
            if rng.random() < 0.1:
                conversation = []
                for _ in range(rng.randint(1, 4)):
                    conversation += [
                        {"from": "human", "value": words(rng, 10, 60)},
                        {"from": "gpt", "value": words(rng, 250, 700)},
                    ]
                yield {"id": f"i{index}_0", "model": "", "conversations": conversation}
                continue
            turns = rng.choice([1, 1, 2, 3, 5, 8])
            conversation = []
            for turn in range(turns):
                question = ("<image>\n" if turn == 0 else "") + words(rng, 5, 20) + "?"
                conversation += [
                    {"from": "human", "value": question},
                    {"from": "gpt", "value": words(rng, 5, 160 if turns < 3 else 50)},
                ]
            image = f"coco/train2017/{index % pool:012d}.jpg"
            yield {"id": f"{index:012d}", "image": image, "conversations": conversation}

    write_array(root / "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json", records())
    return {"subset": "mix665k"}


def llava_zh(root: Path, scale: float) -> dict[str, Any]:
    """157,712 Chinese multi-turn records (UTF-8), bare COCO names."""
    rng = random.Random(0)

    def records() -> Any:
        for index in range(round(157_712 * scale)):
            conversation = []
            for turn in range(rng.choice([1, 2, 3, 4])):
                question = ("<image>\n" if turn == 0 else "") + "".join(rng.choices(HANZI, k=15)) + "？"
                answer = "".join(rng.choices(HANZI, k=rng.randint(20, 200)))
                conversation += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
            yield {"id": f"{index:012d}", "image": f"{index:012d}.jpg", "conversations": conversation}

    write_array(root / "llava_instruct_150k_zh.json", records())
    return {}


def chartqa(root: Path, scale: float) -> dict[str, Any]:
    """`ChartQA Dataset/train/train_{human,augmented}.json`: 7,398 + 20,901 QAs on 18,317 charts."""
    rng = random.Random(0)
    folder = root / "ChartQA Dataset" / "train"
    folder.mkdir(parents=True, exist_ok=True)
    charts = [f"two_col_{index}.png" for index in range(round(18_317 * scale))]
    for kind, count in (("human", 7_398), ("augmented", 20_901)):
        records = [
            {"imgname": charts[index % len(charts)], "query": words(rng, 6, 18) + "?", "label": "16"}
            for index in range(round(count * scale))
        ]
        (folder / f"train_{kind}.json").write_text(json.dumps(records), encoding="utf-8")
    return {}


def docvqa(root: Path, scale: float) -> dict[str, Any]:
    """`train/train_v1.0.json`: 39,463 questions on 10,194 pages, the real item keys."""
    rng = random.Random(0)
    pages = round(10_194 * scale)
    items = []
    for index in range(round(39_463 * scale)):
        page = index % pages
        items.append(
            {
                "questionId": index,
                "question": words(rng, 5, 12) + "?",
                "image": f"documents/doc{page:05d}_1.png",
                "docId": page,
                "ucsf_document_id": f"doc{page:05d}",
                "ucsf_document_page_no": "1",
                "answers": [words(rng, 1, 3)],
                "data_split": "train",
            }
        )
    (root / "train").mkdir(parents=True, exist_ok=True)
    content = {"dataset_name": "docvqa", "dataset_split": "train", "dataset_version": "1.0", "data": items}
    (root / "train" / "train_v1.0.json").write_text(json.dumps(content), encoding="utf-8")
    return {}


def synthdog_en(root: Path, scale: float, row_group: int | None = None) -> dict[str, Any]:
    """One shard `data/train-00000-of-00084-bench.parquet`: 5,952 rows of 60-100 KB incompressible
    "JPEG" bytes and a page of text, in row groups of `row_group` rows (default: one)."""
    rng = random.Random(0)
    rows = round(5_952 * scale)
    blob = rng.randbytes(120_000)
    schema = pa.schema(
        [("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("ground_truth", pa.string())]
    )
    images, texts = [], []
    for row in range(rows):
        start, size = rng.randrange(20_000), rng.randrange(60_000, 100_000)
        images.append({"bytes": b"\xff\xd8" + blob[start : start + size], "path": f"image_{row}.jpg"})
        texts.append(json.dumps({"gt_parse": {"text_sequence": words(rng, 100, 400)}}))
    (root / "data").mkdir(parents=True, exist_ok=True)
    shard = pa.table({"image": images, "ground_truth": texts}, schema=schema)
    path = root / "data" / "train-00000-of-00084-bench.parquet"
    pq.write_table(shard, path, row_group_size=row_group or rows)
    return {"shards": [0]}


def geoqa_plus(root: Path, scale: float) -> dict[str, Any]:
    """`Mix-train.pk`: 72,318 problems (InternVL's count, in one pickle) with grayscale figures of
    120-250 × 150-300 pixels (the real figures' sizes are not known here)."""
    import pickle

    import numpy as np

    rng = random.Random(0)
    problems = [
        {
            "id": index,
            "image": np.full((rng.randint(120, 250), rng.randint(150, 300)), index % 256, dtype=np.uint8),
            "subject": words(rng, 10, 40),
            "choices": [words(rng, 1, 2) for _ in range(4)],
            "label": rng.randrange(4),
        }
        for index in range(round(72_318 * scale))
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "Mix-train.pk").write_bytes(pickle.dumps(problems, protocol=4))
    return {}


GENERATORS = {
    "dvqa": dvqa,
    "sharegpt4v": sharegpt4v,
    "llava_zh": llava_zh,
    "chartqa": chartqa,
    "docvqa": docvqa,
    "synthdog_en": synthdog_en,
    "geoqa_plus": geoqa_plus,
}


def read_unit(tree: Path, source: str, root: Path, options: dict[str, Any], unit: int) -> dict[str, Any]:
    """One unit read in a fresh process importing `dataprep` from `tree`; `root`: absolute."""
    return json.loads(run_in_tree(tree, CHILD, [source, str(root), json.dumps(options), str(unit)]).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sources", nargs="+", default=list(GENERATORS), choices=list(GENERATORS))
    parser.add_argument("--scale", type=float, default=1.0, help="of the real sizes (default: %(default)s)")
    parser.add_argument("--unit", type=int, default=0, help="which unit to read (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions (default: %(default)s)")
    add_trees_argument(parser)
    parser.add_argument("--work", type=Path, help="keep the generated inputs here for another run")
    parser.add_argument("--synthdog-row-group", type=int, help="rows per row group (default: the shard)")
    args = parser.parse_args()
    args.trees = code_trees(parser, args.trees)
    rows = []
    with work_folder(args.work, "adapter-scale-") as work:
        work = work.resolve()
        for source in args.sources:
            generate = GENERATORS[source]
            root = work / source
            if source == "synthdog_en" and args.synthdog_row_group:
                generate = partial(synthdog_en, row_group=args.synthdog_row_group)
                root = work / f"{source}-{args.synthdog_row_group}"
            marker = root / f".options-{args.scale}.json"  # written once the inputs are complete
            if not marker.exists():
                root.mkdir(parents=True, exist_ok=True)
                marker.write_text(json.dumps(generate(root, args.scale)))
            options = json.loads(marker.read_text())
            size = sum(path.stat().st_size for path in root.rglob("*") if path.is_file())
            emit({"kind": "setup", "source": source, "bytes": size, "options": options, "machine": machine()})
            runs: dict[str, list[dict[str, Any]]] = {str(tree): [] for tree in args.trees}
            for rep in range(args.reps):
                for tree in args.trees:
                    result = read_unit(tree, source, root, options, args.unit)
                    runs[str(tree)].append(result)
                    emit({"kind": "run", "source": source, "tree": str(tree), "rep": rep, **result})
            for tree, results in runs.items():
                row: dict[str, Any] = {"source": source, "tree": tree, "units": results[0]["units"]}
                row["records"] = results[0]["records"]
                for key in ("cpu_s", "wall_s", "peak_rss_mib", "rss_growth_mib"):
                    row[key] = round(statistics.median(result[key] for result in results), 2)
                row["total_cpu_s"] = round(row["cpu_s"] * row["units"], 1)
                row["digest"] = ",".join(sorted({result["digest"] for result in results}))
                rows.append(row)
                emit({"kind": "summary", **row})
    print(table(rows, list(rows[0])), file=sys.stderr)


if __name__ == "__main__":
    main()
