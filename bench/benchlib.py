"""Shared helpers of the bench scripts: a photo dataset in the InternVL/LLaVA layout, process-tree
memory sampling (Linux /proc), subprocess timing, medians and a plain-text table."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_sft_prep import sentence
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}


class PhotoMaker:
    """Distinct 'photos' (blurred colour noise + ellipses, JPEG q90; ~80 KB at 640×480, ~0.9 MB at the
    SAM-like 1,500×2,250), fast: each is a random crop of one noise texture with its own shapes."""

    def __init__(self, rng: random.Random, width: int = 640, height: int = 480) -> None:
        self.rng, self.width, self.height = rng, width, height
        bands = [Image.effect_noise((2 * width, 2 * height), 60) for _ in range(3)]
        self.texture = Image.merge("RGB", bands).filter(ImageFilter.GaussianBlur(1.2))

    def __call__(self) -> bytes:
        rng, w, h = self.rng, self.width, self.height
        x, y = rng.randrange(w), rng.randrange(h)
        image = self.texture.crop((x, y, x + w, y + h))
        draw = ImageDraw.Draw(image)
        for _ in range(8):
            a, b = rng.randrange(w - 40), rng.randrange(h - 40)
            colour = tuple(rng.randrange(256) for _ in range(3))
            draw.ellipse([a, b, a + rng.randrange(20, 200), b + rng.randrange(20, 200)], fill=colour)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()


def write_llava_dataset(folder: Path, count: int, seed: int = 0, width: int = 640, height: int = 480) -> Path:
    """`folder/images/NNNNNNNN.jpg` (width×height photos) + `folder/train.jsonl` (InternVL/LLaVA
    records, 1–3 turns); returns the jsonl path. Reuses a complete earlier dataset of the same size."""
    annotation = folder / "train.jsonl"
    if annotation.exists() and sum(1 for _ in annotation.open()) == count:
        return annotation
    rng = random.Random(seed)
    make = PhotoMaker(rng, width, height)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        name = f"{index:08d}.jpg"
        (folder / "images" / name).write_bytes(make())
        conversations = []
        turns = rng.choice([1, 1, 2, 3])
        for turn in range(turns):
            prefix = "<image>\n" if turn == 0 else ""
            conversations += [
                {"from": "human", "value": prefix + sentence(rng, 8, 30) + "?"},
                {"from": "gpt", "value": sentence(rng, 20, 120 // turns)},
            ]
        record = {"id": str(index), "image": name, "width": width, "height": height}
        lines.append(json.dumps({**record, "conversations": conversations}))
    annotation.write_text("\n".join(lines) + "\n")
    return annotation


def recipe(
    path: Path,
    data: Path,
    shard_size: int,
    unit_bytes: int | None,
    tokens: dict[str, Any] | None = None,
    max_side: int = 1024,
) -> Path:
    """A one-source recipe over the dataset; images no larger than `max_side` kept as they are;
    `tokens`: the recipe's token-statistics section, if any."""
    source: dict[str, Any] = {
        "source": "conversations",
        "name": "photos",
        "path": str(data),
        "file": "train.jsonl",
        "image_root": "images",
    }
    if unit_bytes is not None:
        source["unit_bytes"] = unit_bytes
    content = {
        "name": "bench",
        "seed": 0,
        "output": {"dir": str(path.parent / "unused"), "shard_size": shard_size},
        "image": {"max_side": max_side, "format": "jpeg", "quality": 95},
        "sources": [source],
        **({"tokens": tokens} if tokens else {}),
    }
    path.write_text(json.dumps(content))  # JSON is YAML
    return path


def _tree(root: int) -> list[int]:
    """`root` and all its live descendants (by parent pid)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) once it has exited."""
    values = {"Rss:": 0, "Pss:": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                key, _, rest = line.partition(" ")
                if key in values:
                    values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values["Rss:"], values["Pss:"]


def _peak_rss_kib(pid: int) -> int:
    """A process's own peak RSS so far (VmHWM) in KiB; 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next((int(line.split()[1]) for line in handle if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def _is_worker(pid: int) -> bool:
    """A process that runs jobs: a Ray worker (its title `ray::<task or IDLE>`, not Ray's own
    services) or a local pool's (the forkserver and the workers it forks share its command line)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read(4096)
    except OSError:
        return False
    return command.startswith(b"ray::") or b"multiprocessing.forkserver" in command


@dataclass
class TreeMemory:
    """Samples a process tree every `interval` s in a thread; keeps the peak of the summed RSS
    (over-counts shared pages) and of the summed PSS (shared pages split among their users), the
    root's own peak RSS (the driver's) and the largest peak RSS of one worker (Ray's or the local pool's)."""

    root: int
    interval: float = 0.25
    peak_rss_mib: float = 0.0
    peak_pss_mib: float = 0.0
    peak_processes: int = 0
    root_peak_rss_mib: float = 0.0
    worker_peak_rss_mib: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        pids = _tree(self.root)
        rss, pss = map(sum, zip(*(_memory_kib(pid) for pid in pids), strict=True))
        self.peak_rss_mib = max(self.peak_rss_mib, rss / 1024)
        self.peak_pss_mib = max(self.peak_pss_mib, pss / 1024)
        self.peak_processes = max(self.peak_processes, len(pids))
        self.root_peak_rss_mib = max(self.root_peak_rss_mib, _peak_rss_kib(self.root) / 1024)
        workers = [_peak_rss_kib(pid) for pid in pids if pid != self.root and _is_worker(pid)]
        self.worker_peak_rss_mib = max(self.worker_peak_rss_mib, max(workers, default=0) / 1024)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeMemory:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def run_measured(
    command: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    sample_tree: bool = True,
) -> dict[str, Any]:
    """Run a command (in `cwd`) to completion: wall seconds, exit code, the largest single process's
    peak RSS (wait4 rusage: the child and the descendants it waited for) and, with `sample_tree`, the
    sampled tree peaks (reading every process's smaps 4 times a second slows busy workers by a few %:
    leave it off where only time counts). The disk's queue is emptied first (`sync`): no run pays for
    the writeback of the files an earlier one left unwritten, or deleted (a tool that does not fsync
    would bill the next one that does)."""
    os.sync()
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, cwd=cwd, stdout=log, stderr=log
        )
        with TreeMemory(process.pid) if sample_tree else contextlib.nullcontext() as memory:
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        process.returncode = code
        if code:
            log.seek(0)
            raise RuntimeError(f"{' '.join(command)} exited {code}:\n{log.read().decode()[-3000:]}")
    result = {"wall_s": round(wall, 3), "max_single_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    if memory is not None:
        result.update(
            tree_peak_rss_mib=round(memory.peak_rss_mib, 1),
            tree_peak_pss_mib=round(memory.peak_pss_mib, 1),
            tree_peak_processes=memory.peak_processes,
            driver_peak_rss_mib=round(memory.root_peak_rss_mib, 1),
            worker_peak_rss_mib=round(memory.worker_peak_rss_mib, 1),
        )
    return result


def machine() -> dict[str, Any]:
    """Where the numbers come from."""
    with open("/proc/meminfo") as handle:
        total_kib = int(handle.readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(total_kib / 2**20, 1),
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 3)


def emit(record: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    print(json.dumps(record), flush=True)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A markdown table of `rows` restricted to `columns`."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def work_folder(keep: Path | None, prefix: str) -> Iterator[Path]:
    """`keep` (created if needed) when given, so data survive for another run; else a temp folder."""
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)


def add_run_arguments(parser: argparse.ArgumentParser, samples: int, reps: int) -> None:
    """`--samples`, `--reps`, `--shard-size` and `--work`, as the build benches take them."""
    parser.add_argument("--samples", type=int, default=samples, help="records/images (default: %(default)s)")
    parser.add_argument(
        "--reps", type=int, default=reps, help="interleaved repetitions (default: %(default)s)"
    )
    parser.add_argument(
        "--shard-size", type=int, default=1000, help="samples per shard (default: %(default)s)"
    )
    parser.add_argument("--work", type=Path, help="keep dataset and outputs here (default: a temp dir)")


def add_trees_argument(parser: argparse.ArgumentParser) -> None:
    """`--trees`: folders holding a `dataprep` package (e.g. a worktree of an older commit, and
    this checkout), each run in fresh processes; the first is the baseline."""
    parser.add_argument("--trees", type=Path, nargs="+", default=[REPO], help="(default: this checkout)")


def code_trees(parser: argparse.ArgumentParser, trees: list[Path]) -> list[Path]:
    """The `--trees`, absolute; a folder without a `dataprep` package is a usage error (the venv's
    editable install would otherwise be imported in its place)."""
    resolved = [tree.resolve() for tree in trees]
    if missing := [str(tree) for tree in resolved if not (tree / "dataprep").is_dir()]:
        parser.error(f"no dataprep package in {', '.join(missing)}")
    return resolved


def run_in_tree(
    tree: Path, script: str, args: Sequence[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -c script args` importing `dataprep` from `tree`, run in `tree` (`python -c` puts the
    working folder before PYTHONPATH); raises if it fails. Paths in `args` must be absolute."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(tree)}
    command = [sys.executable, "-c", script, *args]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{command[3:]} with {tree} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done
