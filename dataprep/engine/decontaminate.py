"""The decontamination stage: the recipe's eval sets normalized like sources, an index of their
images and questions, one match job per part of the mixture's entries (near-linear: hash and
n-gram lookups, never all pairs), then the overlaps reported and, with `mode: drop`, made rejects;
duplicates within the mixture are found from the fingerprints the jobs return. A re-run reuses the
index and each part's matches while what they were made from is unchanged (file stamps), so a
finished build's re-run starts no engine for this stage."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dataprep.contract.manifest import Decontamination, DuplicateReport, OverlapExample, OverlapReport
from dataprep.contract.rejects import RejectLine
from dataprep.contract.shards import MemberLocation, MemberReader
from dataprep.engine.entry import Entry, source_roots
from dataprep.engine.normalize_all import normalize_all
from dataprep.engine.runner import Job, Runner
from dataprep.engine.settings import WORK_DIR, BuildSettings
from dataprep.files import FileStamp, canonical_json, write_atomic
from dataprep.fingerprints import picture_difference
from dataprep.normalize import FINGERPRINTS, index_path, load_index
from dataprep.overlaps import QuestionIndex, distances, hash_array, near_pairs
from dataprep.part_members import PartReader
from dataprep.recipe.model import DecontaminateSpec, Recipe

EXAMPLES = 5
"""Examples listed per source × eval set (and per duplicate kind × pair of sources)."""
INDEX_FILE = "decontaminate/eval_index.pickle"
INDEX_MARKER = "decontaminate/eval_index.json"  # what the index was made from, its stamp, its counts
MATCHES_DIR = "decontaminate/matches"  # one marker per part: its matches and what they were made from
MATCH_FORMAT = 1  # matches recorded by other matching code are not reused

Location = tuple[str, int, int]  # (part file, offset, size) of a member


@dataclass
class EvalIndex:
    """What the match jobs look eval items up in: item names, image hashes, question n-grams."""

    items: list[tuple[str, str]]  # (eval set label, item id)
    image_items: list[int]  # per image: its item's position
    phashes: np.ndarray
    dhashes: np.ndarray
    image_locations: list[Location]
    questions: QuestionIndex


@dataclass(frozen=True)
class KeptPrint:
    """A kept sample of a part as the driver needs it: position in the part, id, content digest
    (pixels and text), its images' hashes."""

    seq: int
    id: str
    content: str
    phashes: tuple[str, ...]
    dhashes: tuple[str, ...]


@dataclass(frozen=True)
class Found:
    """An eval item a sample of a part overlaps."""

    seq: int
    item: int
    kind: str
    distance: float


@dataclass(frozen=True)
class MatchJob(Job):
    """One part of an entry against the eval index; its result is recorded in `marker` with the
    stamps it was made from, and reused (`done`) while they hold."""

    part: Path
    index_file: Path
    spec: dict[str, Any]  # the recipe's `decontaminate`, as JSON
    marker: Path  # its result, with the key it was made under
    roots: tuple[str, ...]  # the real roots of the entries' and eval sets' sources (`source_roots`)

    def done(self) -> tuple[list[KeptPrint], list[Found]] | None:
        """The recorded result while the part's index, the eval index and the spec are unchanged."""
        if not self.marker.exists():
            return None
        recorded = json.loads(self.marker.read_bytes())
        if recorded["key"] != self._key():
            return None
        kept = [
            KeptPrint(seq, id_, content, tuple(p), tuple(d)) for seq, id_, content, p, d in recorded["kept"]
        ]
        return kept, [Found(*one) for one in recorded["found"]]

    def _key(self) -> dict[str, Any]:
        """Everything the result depends on: the part (its index, written last, stamps it), the eval
        index file, the spec and the matching code."""
        return {
            "format": MATCH_FORMAT,
            "part": FileStamp.read(index_path(self.part)).to_json(),
            "eval_index": FileStamp.read(self.index_file).to_json(),
            "spec": self.spec,
        }

    def run(self) -> tuple[list[KeptPrint], list[Found]]:
        key = self._key()  # before reading: a part changed meanwhile is matched again next time
        kept, found = self._match()
        rows = {"key": key, "kept": [astuple(one) for one in kept], "found": [astuple(one) for one in found]}
        write_atomic(self.marker, json.dumps(rows, separators=(",", ":")).encode("ascii"))
        return kept, found

    def _match(self) -> tuple[list[KeptPrint], list[Found]]:
        spec = DecontaminateSpec.model_validate(self.spec)
        index = _load_eval_index(self.index_file, self.index_file.stat().st_mtime_ns)
        kept: list[KeptPrint] = []
        found: list[Found] = []
        images: list[tuple[int, Location]] = []
        records = ((self.part, record) for record in load_index(self.part)["records"] if "members" in record)
        for _, record, sample in _with_samples(records):
            prints = record[FINGERPRINTS]
            conversation = [[turn["from"], turn["value"]] for turn in sample["conversations"]]
            content = canonical_json([[image["pixels"] for image in prints], conversation])
            kept.append(
                KeptPrint(
                    record["seq"],
                    record["id"],
                    hashlib.sha256(content).hexdigest()[:32],
                    tuple(image["phash"] for image in prints),
                    tuple(image["dhash"] for image in prints),
                )
            )
            for question, answer in _question_answers(sample):
                for item, share in index.questions.matches(question, answer, spec.question_overlap):
                    found.append(Found(record["seq"], item, "text", round(1 - share, 3)))
            for _, offset, size in record["members"][1:]:
                images.append((record["seq"], (str(self.part), offset, size)))
        phashes = hash_array(image for print_ in kept for image in print_.phashes)
        dhashes = hash_array(image for print_ in kept for image in print_.dhashes)
        for ours, theirs in zip(*near_pairs(phashes, index.phashes, spec.image_distance), strict=True):
            if distances(dhashes[ours], index.dhashes[theirs]) > spec.dhash_distance:
                continue
            seq, location = images[ours]
            difference = picture_difference(
                _image_at(location, self.roots), _image_at(index.image_locations[theirs], self.roots)
            )
            if difference <= spec.picture_difference:
                bits = int(distances(phashes[ours], index.phashes[theirs]))
                found.append(Found(seq, index.image_items[theirs], "image", bits))
        return kept, sorted(set(found), key=lambda one: (one.seq, one.item, one.kind))

    def records(self, result: tuple[list[KeptPrint], list[Found]]) -> int:
        return len(result[0])


def _with_samples(
    records: Iterable[tuple[Path, dict[str, Any]]],
) -> Iterator[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """Each (part, index record) with its sample json, read by its location in the index (each part
    opened once)."""
    with MemberReader() as reader:
        for part, record in records:
            _, offset, size = record["members"][0]
            yield part, record, json.loads(reader.read(part, MemberLocation("json", offset, size)))


def _image_at(location: Location, roots: tuple[str, ...]) -> Image.Image:
    path, offset, size = location
    with PartReader(roots) as reader:
        image = Image.open(io.BytesIO(reader.read(Path(path), MemberLocation("image", offset, size))))
    image.load()
    return image


def _question_answers(sample: dict[str, Any]) -> list[tuple[str, str]]:
    """Each human turn with the gpt turn answering it."""
    turns = sample["conversations"]
    return [(turns[i]["value"], turns[i + 1]["value"]) for i in range(0, len(turns) - 1, 2)]


@lru_cache(maxsize=1)
def _load_eval_index(path: Path, mtime_ns: int) -> EvalIndex:
    """The index a build wrote (our own file, in the build's `.work/`), loaded once per worker."""
    with open(path, "rb") as handle:
        return pickle.load(handle)


def eval_index(evals: list[Entry], spec: DecontaminateSpec) -> tuple[EvalIndex, dict[str, int]]:
    """The index of every kept eval sample's images and questions, and items read per eval set.
    A sample of several questions (a chart's) is one item per question, `<id>#<n>`, for text."""
    items: list[tuple[str, str]] = []
    image_items: list[int] = []
    phashes: list[str] = []
    dhashes: list[str] = []
    locations: list[Location] = []
    questions: list[tuple[int, str, str]] = []
    counts: dict[str, int] = {}
    for entry in evals:
        counts[entry.label] = 0
        for part, record, sample in _with_samples(_kept_records(entry)):
            counts[entry.label] += 1
            pairs = _question_answers(sample)
            items.append((entry.label, record["id"]))
            for image, (_, offset, size) in zip(record[FINGERPRINTS], record["members"][1:], strict=True):
                image_items.append(len(items) - 1)
                phashes.append(image["phash"])
                dhashes.append(image["dhash"])
                locations.append((str(part), offset, size))
            for number, (question, answer) in enumerate(pairs):
                if len(pairs) > 1:
                    items.append((entry.label, f"{record['id']}#{number}"))
                questions.append((len(items) - 1, question, answer))
    index = EvalIndex(
        items,
        image_items,
        hash_array(phashes),
        hash_array(dhashes),
        locations,
        QuestionIndex.of(questions, spec.ngram),
    )
    return index, counts


def _reused_eval_index(
    evals: list[Entry], spec: DecontaminateSpec, work: Path
) -> tuple[EvalIndex, dict[str, int]]:
    """`eval_index`, and its file under `work`: the one there (loaded, not rewritten) while its
    marker records the same eval parts (their index stamps), kept counts and n-gram size, and the
    file's stamp; else made and written anew, its marker last."""
    index_file, marker = work / INDEX_FILE, work / INDEX_MARKER
    inputs = {
        "ngram": spec.ngram,
        "evals": [
            [
                entry.label,
                len(entry.kept),
                [
                    [str(part), *FileStamp.read(index_path(part)).to_json()]
                    for part in entry.parts[: entry.used]
                ],
            ]
            for entry in evals
        ],
    }
    counts = _recorded_counts(marker, index_file, inputs)
    if counts is not None:
        return _load_eval_index(index_file, index_file.stat().st_mtime_ns), counts
    index, counts = eval_index(evals, spec)
    write_atomic(index_file, pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    recorded = {"inputs": inputs, "index": FileStamp.read(index_file).to_json(), "counts": counts}
    write_atomic(marker, canonical_json(recorded))
    return index, counts


def _recorded_counts(marker: Path, index_file: Path, inputs: dict[str, Any]) -> dict[str, int] | None:
    """The eval items per set the index marker records, while it records these inputs and the index
    file is as it left it; None otherwise (also for a marker missing or unreadable)."""
    try:
        recorded = json.loads(marker.read_bytes())
        if recorded["inputs"] == inputs and FileStamp.from_json(recorded["index"]).matches(index_file):
            return recorded["counts"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _match_marker(work: Path, part: Path) -> Path:
    """A part's match marker: one name per part, so that its new result replaces its old one."""
    return work / MATCHES_DIR / f"{part.parent.name}-{part.stem}.json"


def _remove_other_markers(folder: Path, keep: set[Path]) -> None:
    """The markers of parts this build no longer matches (and any a killed write left) go."""
    for path in folder.iterdir() if folder.is_dir() else []:
        if path not in keep:
            path.unlink(missing_ok=True)


def _kept_records(entry: Entry) -> list[tuple[Path, dict[str, Any]]]:
    """(part, index record) of each of the entry's kept samples, aligned with `entry.kept`."""
    found = []
    for part in entry.parts[: entry.used]:
        for record in load_index(part)["records"]:
            if len(found) == len(entry.kept):
                return found
            if "members" in record:
                found.append((part, record))
    return found


def decontaminate(
    recipe: Recipe, settings: BuildSettings, runner: Runner, entries: list[Entry]
) -> Decontamination:
    """Normalize the eval sets, match every entry's parts against them, report (and with `drop`
    reject) the overlaps, and report duplicates within the mixture."""
    spec = recipe.decontaminate
    assert spec is not None
    work = settings.out / WORK_DIR
    evals = normalize_all(recipe.model_copy(update={"sources": list(spec.eval_sets)}), settings, runner)
    index, counts = _reused_eval_index(evals, spec, work)
    spec_json = spec.model_dump(mode="json")
    roots = source_roots(entries + evals)
    jobs = [
        (
            f"{entry.label} {part.name}",
            MatchJob(part, work / INDEX_FILE, spec_json, _match_marker(work, part), roots),
        )
        for entry in entries
        for part in entry.parts[: entry.used]
    ]
    results = iter(runner.run("decontaminate", jobs, len(jobs)))
    _remove_other_markers(work / MATCHES_DIR, {job.marker for _, job in jobs})
    prints: list[list[KeptPrint]] = []
    overlaps: dict[tuple[str, str], dict[int, list[OverlapExample]]] = defaultdict(dict)  # by kept position
    to_drop: list[dict[int, tuple[Found, str]]] = []
    for entry in entries:
        aligned: list[KeptPrint] = []
        dropping: dict[int, tuple[Found, str]] = {}
        for unit in entry.units[: entry.used]:
            kept, found = next(results)
            position = {print_.seq: len(aligned) + offset for offset, print_ in enumerate(kept)}
            aligned.extend(kept)
            for one in found:
                at = position[one.seq]
                if at >= len(entry.kept):  # past a `--limit`
                    continue
                eval_set, item = index.items[one.item]
                example = OverlapExample(
                    sample=aligned[at].id, eval_item=item, kind=one.kind, distance=one.distance
                )
                overlaps[(entry.label, eval_set)].setdefault(at, []).append(example)
                dropping.setdefault(at, (one, unit))
        prints.append(aligned[: len(entry.kept)])
        to_drop.append(dropping)
    dropped = 0
    if spec.mode == "drop":
        for entry, aligned, dropping in zip(entries, prints, to_drop, strict=True):
            dropped += _drop(entry, aligned, dropping, index)
    reports = [
        OverlapReport(
            source=source,
            eval_set=eval_set,
            samples=len(samples),
            examples=[examples[0] for examples in list(samples.values())[:EXAMPLES]],
        )
        for (source, eval_set), samples in overlaps.items()
    ]
    duplicates = _duplicates(entries, prints, spec) if spec.duplicates else []
    return Decontamination(
        mode=spec.mode, eval_items=counts, overlaps=reports, dropped=dropped, duplicates=duplicates
    )


def _drop(
    entry: Entry, aligned: list[KeptPrint], dropping: dict[int, tuple[Found, str]], index: EvalIndex
) -> int:
    """Turn the entry's overlapping samples into `eval_overlap` rejects, in their kept order."""
    for at in sorted(dropping):
        one, unit = dropping[at]
        eval_set, item = index.items[one.item]
        detail = f"{eval_set} item {item}: " + (
            f"image, pHash {one.distance:g} bits apart"
            if one.kind == "image"
            else f"question ({1 - one.distance:.0%} of its n-grams) and answer"
        )
        entry.rejects.append(RejectLine(entry.label, aligned[at].id, "eval_overlap", detail, unit))
    entry.kept = entry.kept.without(set(dropping))
    return len(dropping)


def _duplicates(
    entries: list[Entry], prints: list[list[KeptPrint]], spec: DecontaminateSpec
) -> list[DuplicateReport]:
    """Near-duplicate images across sources and exact duplicate samples (any two), per pair of sources."""
    pairs: dict[tuple[str, str, str], list[tuple[str, str, float]]] = defaultdict(list)
    by_content: dict[str, tuple[str, str]] = {}
    owners: list[tuple[int, str]] = []
    phashes: list[str] = []
    dhashes: list[str] = []
    for number, (entry, aligned) in enumerate(zip(entries, prints, strict=True)):
        for print_ in aligned:
            first = by_content.setdefault(print_.content, (entry.label, print_.id))
            if first != (entry.label, print_.id):
                labels = (first[0], entry.label)
                pairs[("exact_duplicate_sample", *labels)].append((first[1], print_.id, 0.0))
            for phash, dhash in zip(print_.phashes, print_.dhashes, strict=True):
                owners.append((number, print_.id))
                phashes.append(phash)
                dhashes.append(dhash)
    p, d = hash_array(phashes), hash_array(dhashes)
    for first, second in zip(*near_pairs(p, p, spec.duplicate_distance), strict=True):
        if owners[first][0] >= owners[second][0]:  # each pair once, across sources only
            continue
        if distances(d[first], d[second]) > spec.duplicate_distance:
            continue
        labels = (entries[owners[first][0]].label, entries[owners[second][0]].label)
        bits = float(distances(p[first], p[second]))
        pairs[("near_duplicate_image", *labels)].append((owners[first][1], owners[second][1], bits))
    return [
        DuplicateReport(kind=kind, sources=(a, b), pairs=len(found), examples=found[:EXAMPLES])
        for (kind, a, b), found in sorted(pairs.items())
    ]
