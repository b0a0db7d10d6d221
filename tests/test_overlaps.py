"""The joins: every pair within the distance is found (checked against all pairs), questions match
on their informative n-grams and the same answer."""

from __future__ import annotations

import numpy as np
import pytest

from dataprep.overlaps import MAX_INDEXED_DISTANCE, QuestionIndex, near_pairs


def all_pairs(queries: np.ndarray, index: np.ndarray, max_distance: int) -> set[tuple[int, int]]:
    found = set()
    for a, query in enumerate(queries):
        for b, indexed in enumerate(index):
            if int(query ^ indexed).bit_count() <= max_distance:
                found.add((a, b))
    return found


@pytest.mark.parametrize("max_distance", [0, 3, MAX_INDEXED_DISTANCE])
def test_near_pairs_are_exactly_the_pairs_within_the_distance(max_distance: int) -> None:
    rng = np.random.default_rng(max_distance)
    index = rng.integers(0, 2**64, size=300, dtype=np.uint64)
    queries = rng.integers(0, 2**64, size=200, dtype=np.uint64)
    for position in range(0, 200, 2):  # near copies, up to 10 bits flipped anywhere
        flips = rng.choice(64, size=rng.integers(0, 11), replace=False)
        queries[position] = index[position] ^ np.uint64(sum(1 << int(bit) for bit in flips))
    ours, theirs = near_pairs(queries, index, max_distance)
    assert set(zip(ours.tolist(), theirs.tolist(), strict=True)) == all_pairs(queries, index, max_distance)
    assert len(ours) > 0


def test_near_pairs_refuses_a_distance_the_index_cannot_promise() -> None:
    hashes = np.zeros(2, dtype=np.uint64)
    with pytest.raises(ValueError, match="within 7 bits"):
        near_pairs(hashes, hashes, MAX_INDEXED_DISTANCE + 1)


def test_questions_match_on_informative_grams_and_the_same_answer() -> None:
    suffix = "\nAnswer the question using a single word or phrase."
    questions = [
        (0, f"<image>\nWhat is the value of Kenya in 2010?{suffix}", "42"),
        (1, f"<image>\nWhat is the value of Peru in 2011?{suffix}", "17"),
        (2, f"<image>\nWhat is the value of Chile in 2012?{suffix}", "8"),
        (3, f"<image>\nWhat is the value of Oman in 2013?{suffix}", "5"),
        (4, "<image>\nWhich letter marks the stem?", "C"),
    ]
    index = QuestionIndex.of(questions, 4)
    assert "answer the question using" not in index.postings  # in every chart question: boilerplate
    assert "what is the value" not in index.postings
    assert index.matches("what is the value of KENYA in 2010", "42", 0.8) == [(0, 1.0)]
    assert index.matches("What is the value of Kenya in 2010?", "43", 0.8) == []  # another answer
    assert index.matches("What is the value of Norway in 2010?", "42", 0.5) == []  # another entity
    assert index.matches("Which letter marks the stem?", "c", 1.0) == [(4, 1.0)]
