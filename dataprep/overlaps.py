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
COMMON_GRAM_SHARE = 0.01
COMMON_GRAM_FLOOR = 3
"""An n-gram held by more eval questions than both this share and this floor is boilerplate (a
prompt's instruction, a template's wording): it is not indexed and does not count toward a match."""


def hash_array(hashes: Iterable[str]) -> np.ndarray:
    """Hex hashes as an array of unsigned 64-bit integers."""
    return np.array([int(value, 16) for value in hashes], dtype=np.uint64)


def near_pairs(queries: np.ndarray, index: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """(query positions, index positions) of every pair of hashes at most `max_distance`
    (≤ `MAX_INDEXED_DISTANCE`) bits apart, sorted by query then index position."""
    if max_distance > MAX_INDEXED_DISTANCE:
        raise ValueError(f"the index finds pairs within {MAX_INDEXED_DISTANCE} bits, not {max_distance}")
    found_queries, found_index = [], []
    flips = np.array([0] + [1 << bit for bit in range(CHUNK_BITS)], dtype=np.uint64)
    mask = np.uint64((1 << CHUNK_BITS) - 1)
    for chunk in range(CHUNKS):
        shift = np.uint64(chunk * CHUNK_BITS)
        index_chunks = (index >> shift) & mask
        order = np.argsort(index_chunks, kind="stable")
        ordered = index_chunks[order]
        query_chunks = (queries >> shift) & mask
        for flip in flips:
            keys = query_chunks ^ flip
            low = np.searchsorted(ordered, keys, "left")
            counts = np.searchsorted(ordered, keys, "right") - low
            total = int(counts.sum())
            if not total:
                continue
            starts = np.repeat(low - (np.cumsum(counts) - counts), counts)
            found_queries.append(np.repeat(np.arange(len(queries)), counts))
            found_index.append(order[np.arange(total) + starts])
    if not found_queries:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    query_positions, index_positions = np.concatenate(found_queries), np.concatenate(found_index)
    close = np.bitwise_count(queries[query_positions] ^ index[index_positions]) <= max_distance
    pairs = np.unique(query_positions[close] * len(index) + index_positions[close])  # a pair once
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
