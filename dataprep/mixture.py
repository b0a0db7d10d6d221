"""The mixing plan: which kept samples of each source, how often, in which shard and order.

Everything is derived from the seed, so the same kept samples give the same plan anywhere.
Each shard carries every source in the mixture's proportions: a source's count in a shard
is the floor or the ceiling of its exact share, and every source is used up exactly.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Component:
    """One recipe entry as the planner sees it: its label, how many samples it kept, how to draw from them."""

    label: str
    kept: int
    take: str | int | float
    repeat: int


@dataclass(frozen=True)
class ShardSlots:
    """One shard's samples, in order: the `indices[i]`-th kept sample of component `components[i]`;
    `counts`: how many of each component."""

    components: np.ndarray
    indices: np.ndarray
    counts: list[int]


@dataclass(frozen=True)
class Plan:
    """Every shard's samples end to end, as two arrays of the smallest unsigned type that holds them
    (a few bytes per planned sample, not an object each); shard `s` holds positions
    `starts[s]:starts[s + 1]`."""

    components: np.ndarray
    indices: np.ndarray
    starts: list[int]
    counts: list[list[int]]  # per shard, how many of each component

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, shard: int) -> ShardSlots:
        shard = range(len(self))[shard]  # -1 is the last shard; past the end, an IndexError
        start, end = self.starts[shard], self.starts[shard + 1]
        return ShardSlots(self.components[start:end], self.indices[start:end], self.counts[shard])

    def __iter__(self) -> Iterator[ShardSlots]:
        return (self[shard] for shard in range(len(self)))


def selected_count(component: Component) -> int:
    """How many distinct kept samples a component contributes (before `repeat`)."""
    if component.take == "all":
        return component.kept
    if isinstance(component.take, float):
        return min(component.kept, round(component.kept * component.take))
    return min(component.kept, int(component.take))


def draw(component: Component, seed: int) -> array[int]:
    """The component's kept-sample indices in the order the mixture uses them (repeats included)."""
    rng = random.Random(f"{seed}:draw:{component.label}")
    count = selected_count(component)
    chosen = (
        sorted(rng.sample(range(component.kept), count)) if count < component.kept else range(component.kept)
    )
    order = array(smallest_unsigned(component.kept).char, chosen) * component.repeat
    rng.shuffle(order)  # as on a list: the same swaps, 1 to 8 bytes an item instead of 36
    return order


def smallest_unsigned(maximum: int) -> np.dtype:
    """The smallest unsigned integer type that holds `maximum` (its `char` is also the `array` type
    code of that size)."""
    kinds = (np.uint8, np.uint16, np.uint32, np.uint64)
    return np.dtype(next(kind for kind in kinds if maximum <= np.iinfo(kind).max))


def allocate(totals: list[int], shard_size: int) -> list[list[int]]:
    """Per shard, how many samples of each component: floor or ceil of the exact share,
    choosing the ceilings for the components furthest behind their cumulative target."""
    grand_total = sum(totals)
    allocated = [0] * len(totals)
    shards = []
    position = 0
    while position < grand_total:
        size = min(shard_size, grand_total - position)
        position += size
        exact = [total * size / grand_total for total in totals]
        counts = [math.floor(value) for value in exact]
        behind = [
            total * position / grand_total - done for total, done in zip(totals, allocated, strict=True)
        ]
        fractional = [index for index, value in enumerate(exact) if value != counts[index]]
        fractional.sort(key=lambda index: (-(behind[index] - counts[index]), index))
        for index in fractional[: size - sum(counts)]:
            counts[index] += 1
        for index, count in enumerate(counts):
            allocated[index] += count
        shards.append(counts)
    if allocated != totals:
        raise AssertionError(f"allocation drifted: {allocated} != {totals}")
    return shards


def plan(components: list[Component], shard_size: int, seed: int) -> Plan:
    """The samples of each shard, in order."""
    orders = [np.asarray(draw(component, seed)) for component in components]
    allocation = allocate([len(order) for order in orders], shard_size)
    total = sum(len(order) for order in orders)
    planned_components = np.empty(total, smallest_unsigned(len(components)))
    planned_indices = np.empty(total, smallest_unsigned(max((c.kept for c in components), default=0)))
    numbers = np.arange(len(components), dtype=planned_components.dtype)
    cursors = [0] * len(components)
    starts = [0]
    for shard_index, counts in enumerate(allocation):
        start, end = starts[-1], starts[-1] + sum(counts)
        shard_components = np.repeat(numbers, counts)
        shard_indices = np.concatenate(
            [
                order[cursor : cursor + count]
                for order, cursor, count in zip(orders, cursors, counts, strict=True)
            ]
        )
        cursors = [cursor + count for cursor, count in zip(cursors, counts, strict=True)]
        shuffled = list(range(end - start))  # the order a shuffle of the shard's samples gives them
        random.Random(f"{seed}:shard:{shard_index}").shuffle(shuffled)
        planned_components[start:end] = shard_components[shuffled]
        planned_indices[start:end] = shard_indices[shuffled]
        starts.append(end)
    return Plan(planned_components, planned_indices, starts, allocation)
