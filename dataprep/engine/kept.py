"""An entry's kept samples as the driver holds them until the shards are written: per part, their
digests and member locations packed in arrays (~40 bytes a sample of two members, not an object per
sample and member); one sample's `SampleCopy` is made only when a shard job needs it."""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dataprep.mixture import smallest_unsigned
from dataprep.shard_writer import SampleCopy

DIGEST_BYTES = 16
"""A sample digest (32 hex digits in a part's index) as bytes."""


@dataclass(frozen=True)
class PartSamples:
    """The kept samples of one part, in order: sample `i`'s digest is `digests[16 i : 16 (i + 1)]`,
    its members are `starts[i]:starts[i + 1]` of `codes` (into `suffixes`), `offsets` and `sizes`."""

    part: str  # the part tar, relative to the work folder
    suffixes: tuple[str, ...]
    digests: bytes
    starts: array[int]
    codes: array[int]
    offsets: array[int]
    sizes: array[int]

    @classmethod
    def of(cls, part: str, samples: Iterable[tuple[str, Iterable[Sequence[Any]]]]) -> PartSamples:
        """From each sample's (digest, [(suffix, offset, size), ...]), as a part's index lists them."""
        numbers: dict[str, int] = {}
        digests = bytearray()
        starts, codes, offsets, sizes = [0], [], [], []
        for digest, members in samples:
            digests += bytes.fromhex(digest)
            for suffix, offset, size in members:
                codes.append(numbers.setdefault(suffix, len(numbers)))
                offsets.append(offset)
                sizes.append(size)
            starts.append(len(codes))
        if len(digests) != DIGEST_BYTES * (len(starts) - 1):
            raise ValueError(f"{part}: a sample digest in its index is not {2 * DIGEST_BYTES} hex digits")
        return cls(part, tuple(numbers), bytes(digests), *map(_packed, (starts, codes, offsets, sizes)))

    def __len__(self) -> int:
        return len(self.starts) - 1

    def copy(self, position: int, key: str) -> SampleCopy:
        """The `position`-th sample as a shard copies it, named `key`."""
        first, last = self.starts[position], self.starts[position + 1]
        suffixes = map(self.suffixes.__getitem__, self.codes[first:last])
        members = tuple(zip(suffixes, self.offsets[first:last], self.sizes[first:last], strict=True))
        digest = self.digests[DIGEST_BYTES * position : DIGEST_BYTES * (position + 1)].hex()
        return SampleCopy(key, self.part, members, digest)


def _packed(values: list[int]) -> array[int]:
    """`values` in an array of the smallest unsigned type that holds them."""
    return array(smallest_unsigned(max(values, default=0)).char, values)


@dataclass
class KeptSamples:
    """An entry's kept samples: its parts' samples end to end, numbered from 0."""

    parts: list[PartSamples] = field(default_factory=list, init=False)
    ends: list[int] = field(default_factory=list, init=False)  # samples in parts[: i + 1]

    def append(self, part: PartSamples) -> None:
        self.parts.append(part)
        self.ends.append(len(self) + len(part))

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def copy(self, index: int, key: str) -> SampleCopy:
        """The `index`-th kept sample as a shard copies it, named `key`."""
        number = bisect.bisect_right(self.ends, index)
        return self.parts[number].copy(index - (self.ends[number - 1] if number else 0), key)

    def without(self, dropped: set[int]) -> KeptSamples:
        """These samples less those at the `dropped` indices, in order."""
        kept = KeptSamples()
        start = 0
        for part, end in zip(self.parts, self.ends, strict=True):
            positions = [position for position in range(len(part)) if start + position not in dropped]
            start = end
            if len(positions) == len(part):
                kept.append(part)
                continue
            copies = (part.copy(position, "") for position in positions)
            kept.append(PartSamples.of(part.part, ((copy.digest, copy.members) for copy in copies)))
        return kept
