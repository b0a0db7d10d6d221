"""The mixing plan: which kept samples of each source, how often, in which shard and order.

Everything is derived from the seed, so the same kept samples give the same plan anywhere.
Each shard carries every source in the mixture's proportions: a source's count in a shard
is the floor or the ceiling of its exact share, and every source is used up exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Component:
    """One recipe entry as the planner sees it: its label, how many samples it kept, how to draw from them."""

    label: str
    kept: int
    take: str | int | float
    repeat: int


@dataclass(frozen=True, slots=True)
class Slot:
    """One sample of the mixture: the `index`-th kept sample of component `component`."""

    component: int
    index: int


def selected_count(component: Component) -> int:
    """How many distinct kept samples a component contributes (before `repeat`)."""
    if component.take == "all":
        return component.kept
    if isinstance(component.take, float):
        return min(component.kept, round(component.kept * component.take))
    return min(component.kept, int(component.take))


def draw(component: Component, seed: int) -> list[int]:
    """The component's kept-sample indices in the order the mixture uses them (repeats included)."""
    rng = random.Random(f"{seed}:draw:{component.label}")
    count = selected_count(component)
    chosen = (
        sorted(rng.sample(range(component.kept), count))
        if count < component.kept
        else list(range(component.kept))
    )
    order = chosen * component.repeat
    rng.shuffle(order)
    return order


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


def plan(components: list[Component], shard_size: int, seed: int) -> list[list[Slot]]:
    """The samples of each shard, in order."""
    orders = [draw(component, seed) for component in components]
    cursors = [0] * len(components)
    shards = []
    for shard_index, counts in enumerate(allocate([len(order) for order in orders], shard_size)):
        slots = []
        for component, count in enumerate(counts):
            start = cursors[component]
            slots.extend(Slot(component, index) for index in orders[component][start : start + count])
            cursors[component] = start + count
        random.Random(f"{seed}:shard:{shard_index}").shuffle(slots)
        shards.append(slots)
    return shards
