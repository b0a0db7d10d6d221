"""The mixing plan: exact totals, per-shard proportions, seeded and reproducible."""

from __future__ import annotations

import random

import pytest

from dataprep.mixture import Component, allocate, draw, plan, selected_count


@pytest.mark.parametrize("trial", range(300))
def test_allocation_keeps_every_shard_within_one_of_its_share(trial):
    rng = random.Random(trial)
    totals = [rng.choice([0, rng.randint(1, 40), rng.randint(1, 3000)]) for _ in range(rng.randint(1, 9))]
    if not sum(totals):
        totals[0] = 1
    shard_size = rng.randint(1, 300)
    shards = allocate(totals, shard_size)
    grand = sum(totals)
    assert [sum(column) for column in zip(*shards, strict=True)] == totals
    assert all(sum(counts) == shard_size for counts in shards[:-1])
    for counts in shards:
        size = sum(counts)
        for total, count in zip(totals, counts, strict=True):
            assert abs(count - total * size / grand) < 1


def test_take_and_repeat():
    assert selected_count(Component("a", 10, "all", 1)) == 10
    assert selected_count(Component("a", 10, 4, 1)) == 4
    assert selected_count(Component("a", 10, 40, 1)) == 10
    assert selected_count(Component("a", 10, 0.25, 1)) == 2
    order = draw(Component("a", 10, 4, 3), seed=1)
    assert len(order) == 12 and len(set(order)) == 4
    assert all(order.count(index) == 3 for index in set(order))


def test_plan_is_seeded():
    components = [Component("a", 50, "all", 1), Component("b", 30, 0.5, 2)]
    first = plan(components, 7, seed=5)
    assert first == plan(components, 7, seed=5)
    assert first != plan(components, 7, seed=6)
    slots = [slot for shard in first for slot in shard]
    assert sum(slot.component == 0 for slot in slots) == 50
    assert sorted(slot.index for slot in slots if slot.component == 0) == list(range(50))
