"""Kept samples packed per part: every sample's copy as the index lists it, whatever the sizes."""

from __future__ import annotations

import random

import pytest

from dataprep.engine.kept import KeptSamples, PartSamples
from dataprep.shard_writer import SampleCopy


def index_samples(rng: random.Random, count: int, largest: int) -> list[tuple[str, list[list[object]]]]:
    """(digest, members) as a part's index lists them: a json member and 0-3 images each."""
    samples = []
    for _ in range(count):
        suffixes = ["json", *(f"{n}.{rng.choice(['jpg', 'png', 'webp'])}" for n in range(rng.randrange(4)))]
        members = [[suffix, rng.randrange(largest) * 512, rng.randrange(largest)] for suffix in suffixes]
        samples.append((rng.randbytes(16).hex(), members))
    return samples


@pytest.mark.parametrize("largest", [200, 60_000, 2**31, 2**40])
def test_every_sample_is_copied_as_its_index_lists_it(largest):
    rng = random.Random(largest)
    samples = index_samples(rng, 300, largest)
    part = PartSamples.of("parts/a-0123/000007.tar", samples)
    assert len(part) == 300
    for position, (digest, members) in enumerate(samples):
        expected = SampleCopy("k", "parts/a-0123/000007.tar", tuple(map(tuple, members)), digest)
        assert part.copy(position, "k") == expected
    assert part.offsets.itemsize == {200: 4, 60_000: 4, 2**31: 8, 2**40: 8}[largest]  # ×512 offsets
    assert part.sizes.itemsize == {200: 1, 60_000: 2, 2**31: 4, 2**40: 8}[largest]


def test_indices_run_across_parts_empty_ones_included_and_dropped_samples_leave_the_rest_in_order():
    rng = random.Random(5)
    parts = [index_samples(rng, count, 1000) for count in (4, 0, 3, 5)]
    kept = KeptSamples()
    for number, samples in enumerate(parts):
        kept.append(PartSamples.of(f"parts/p/{number:06d}.tar", samples))
    flat = [
        (f"parts/p/{number:06d}.tar", sample) for number, samples in enumerate(parts) for sample in samples
    ]
    assert len(kept) == 12
    copies = [kept.copy(index, str(index)) for index in range(12)]
    assert [(copy.part, (copy.digest, [list(m) for m in copy.members])) for copy in copies] == flat
    fewer = kept.without({0, 5, 6, 11})
    assert len(fewer) == 8 and len(kept) == 12
    assert [fewer.copy(index, "").digest for index in range(8)] == [
        copy.digest for index, copy in enumerate(copies) if index not in {0, 5, 6, 11}
    ]
    assert fewer.parts[1] is kept.parts[1]  # a part with nothing dropped is shared, not copied


def test_a_digest_that_is_not_32_hex_digits_is_refused():
    with pytest.raises(ValueError, match=r"parts/x\.tar: a sample digest in its index is not 32 hex digits"):
        PartSamples.of("parts/x.tar", [("ab" * 15, [["json", 512, 9]])])
