"""The mixing plan: exact totals, per-shard proportions, seeded and reproducible."""

from __future__ import annotations

import hashlib
import random

import pytest

from dataprep.mixture import Component, Plan, allocate, draw, plan, selected_count


def plan_text(shards: Plan) -> str:
    """Every shard's (component, index) pairs in order, one shard a line."""
    return "\n".join(
        ",".join(f"{c}:{i}" for c, i in zip(shard.components.tolist(), shard.indices.tolist(), strict=True))
        for shard in shards
    )


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
    assert plan_text(first) == plan_text(plan(components, 7, seed=5))
    assert plan_text(first) != plan_text(plan(components, 7, seed=6))
    assert first.components.tolist().count(0) == 50
    assert sorted(first.indices[first.components == 0].tolist()) == list(range(50))
    assert first[-1].indices.tolist() == first.indices[first.starts[-2] :].tolist()
    with pytest.raises(IndexError):
        first[len(first)]
    for shard in first:
        assert shard.counts == [shard.components.tolist().count(number) for number in (0, 1)]


# (seed, shard size, components, sha256 of `plan_text`): produced by the planner as it was before
# the plan became arrays (a list of `Slot` objects per shard, commit e9bbb19), so that any later
# change to how the plan is held or made keeps every sample's shard and position.
GOLDEN_PLANS = [
    (
        1,
        7,
        [("a", 50, "all", 1), ("b", 30, 0.5, 2)],
        "0438ebbadd9bdea3f349872d0d3d031d325fc1353914567b0452326a666296ed",
    ),
    (0, 1000, [("a", 10_000, "all", 1)], "183cb5dbddcda096be5adfdbe70fbdc27fd526d0f7b9bab8db4e092497b01883"),
    (
        42,
        333,
        [("a", 5_000, "all", 1), ("b", 1_200, 300, 3), ("c", 7, "all", 5), ("d", 0, "all", 1)],
        "0a1aa32a25611eaa4db45f5becac8c33dd09207230de0f19da6eeb3b1833adff",
    ),
    (
        7,
        64,
        [("x", 20_000, 0.1, 1), ("y", 900, 0.9, 2), ("z", 4_000, 4_000, 1)],
        "9f60195e34e717444bddf9c5d0e3d81d657a50e53068920a66193c84e2829baf",
    ),
    (
        12345,
        2000,
        [("big", 200_000, "all", 1), ("half", 80_000, 0.5, 2), ("few", 3_000, 1_000, 4)],
        "4e5b123dc436aac460092d8e719ee4323db63a9c79ab9f5308c6a9f97688e39e",
    ),
    (
        3,
        1,
        [("a", 3, "all", 2), ("b", 2, "all", 1)],
        "2cada4e8e29a35a5d0856d0247977fd55d0ff1021d795eb6ca0f0f7d8e253de6",
    ),
]


@pytest.mark.parametrize(("seed", "shard_size", "components", "expected"), GOLDEN_PLANS)
def test_the_plan_of_a_seed_is_the_one_earlier_versions_made(seed, shard_size, components, expected):
    shards = plan([Component(*component) for component in components], shard_size, seed)
    assert hashlib.sha256(plan_text(shards).encode()).hexdigest() == expected
