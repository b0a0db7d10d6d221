"""Joins that find overlaps without comparing all pairs: near perceptual hashes by multi-index
hashing, and questions by shared n-grams.

`near_pairs` splits each 64-bit hash into four 16-bit chunks. Two hashes within 7 bits of each
other have a chunk within 1 bit (pigeonhole: four chunks of 2+ bits each would make 8), so every
such pair is found by looking each query chunk up, and its 16 one-bit neighbours, in the sorted
chunks of the index: 68 binary searches per query, and only the hashes sharing a chunk are compared.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from dataprep.fingerprints import ngrams, normalized_answer

CHUNKS = 4
CHUNK_BITS = 16
MAX_INDEXED_DISTANCE = CHUNKS * 2 - 1
"""The largest distance `near_pairs` is sure to find every pair within."""
QUERY_BATCH = 1 << 16
COMMON_GRAM_SHARE = 0.01
COMMON_GRAM_FLOOR = 3
"""An n-gram held by more eval questions than both this share and this floor is boilerplate (a
prompt's instruction, a template's wording): it is not indexed and does not count toward a match."""


def hash_array(hashes: Iterable[str]) -> np.ndarray:
    """Hex hashes as an array of unsigned 64-bit integers."""
    return np.array([int(value, 16) for value in hashes], dtype=np.uint64)


def near_pairs(queries: np.ndarray, index: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """(query positions, index positions) of every pair of hashes at most `max_distance`
    (≤ `MAX_INDEXED_DISTANCE`) bits apart, sorted by query then index position. Within 3 bits a
    pair shares a whole chunk, so only equal chunks are looked up; beyond, their one-bit neighbours
    too. Queries go `QUERY_BATCH` at a time: candidates are held for one batch and one probe."""
    if max_distance > MAX_INDEXED_DISTANCE:
        raise ValueError(f"the index finds pairs within {MAX_INDEXED_DISTANCE} bits, not {max_distance}")
    flips = np.array([0] + [1 << bit for bit in range(CHUNK_BITS)] * (max_distance >= CHUNKS), np.uint64)
    mask = np.uint64((1 << CHUNK_BITS) - 1)
    shifts = [np.uint64(chunk * CHUNK_BITS) for chunk in range(CHUNKS)]
    orders = [np.argsort((index >> shift) & mask, kind="stable") for shift in shifts]
    ordered = [((index >> shift) & mask)[order] for shift, order in zip(shifts, orders, strict=True)]
    found: list[np.ndarray] = []
    for start in range(0, len(queries), QUERY_BATCH):
        batch = queries[start : start + QUERY_BATCH]
        for shift, order, chunks in zip(shifts, orders, ordered, strict=True):
            for flip in flips:
                keys = ((batch >> shift) & mask) ^ flip
                low = np.searchsorted(chunks, keys, "left")
                counts = np.searchsorted(chunks, keys, "right") - low
                total = int(counts.sum())
                if not total:
                    continue
                query_positions = np.repeat(np.arange(len(batch)), counts)
                index_positions = order[
                    np.arange(total) + np.repeat(low - (np.cumsum(counts) - counts), counts)
                ]
                close = np.bitwise_count(batch[query_positions] ^ index[index_positions]) <= max_distance
                found.append((query_positions[close] + start) * len(index) + index_positions[close])
    pairs = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)  # each pair once
    return pairs // len(index), pairs % len(index)


def distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Bits in which each pair of hashes differs."""
    return np.bitwise_count(first ^ second).astype(np.int64)


@dataclass
class QuestionIndex:
    """Eval questions by their informative n-grams, with their normalized answers."""

    n: int
    items: list[tuple[int, str]] = field(default_factory=list)  # (eval item position, answer)
    grams: list[set[str]] = field(default_factory=list)  # each question's informative n-grams
    postings: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, questions: list[tuple[int, str, str]], n: int) -> QuestionIndex:
        """The index of (eval item position, question, answer) triples."""
        index = cls(n)
        all_grams = [ngrams(question, n) for _, question, _ in questions]
        frequency = Counter(gram for grams in all_grams for gram in grams)
        common = max(COMMON_GRAM_FLOOR, COMMON_GRAM_SHARE * len(questions))
        postings: dict[str, list[int]] = defaultdict(list)
        for (item, _, answer), grams in zip(questions, all_grams, strict=True):
            informative = {gram for gram in grams if frequency[gram] <= common}
            if not informative:
                continue  # boilerplate only: matched by its image, if at all
            for gram in informative:
                postings[gram].append(len(index.items))
            index.items.append((item, normalized_answer(answer)))
            index.grams.append(informative)
        index.postings = dict(postings)
        return index

    def matches(self, question: str, answer: str, min_share: float) -> list[tuple[int, float]]:
        """(eval item position, share of its informative n-grams found) of every eval question with
        at least `min_share` of them in `question` and the same normalized answer."""
        hits: Counter[int] = Counter()
        for gram in ngrams(question, self.n):
            hits.update(self.postings.get(gram, ()))
        answer = normalized_answer(answer)
        found = []
        for position, count in sorted(hits.items()):
            item, expected = self.items[position]
            share = count / len(self.grams[position])
            if share >= min_share and expected == answer:
                found.append((item, round(share, 3)))
        return found
