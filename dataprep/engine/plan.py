"""The mixture plan of the gathered entries, and each planned shard's sample copies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataprep.engine.runner import BuildError
from dataprep.mixture import Component, Plan, ShardSlots, plan, selected_count
from dataprep.recipe.model import Recipe
from dataprep.shard_writer import SampleCopy

if TYPE_CHECKING:
    from dataprep.engine.entry import Entry


def components_of(entries: list[Entry]) -> list[Component]:
    return [
        Component(entry.label, len(entry.kept), entry.entry.take, entry.entry.repeat) for entry in entries
    ]


def plan_mixture(components: list[Component], recipe: Recipe) -> Plan:
    """The recipe's shard plan; a mixture too large to plan in memory is a build error."""
    try:
        return plan(components, recipe.output.shard_size, recipe.seed)
    except MemoryError:
        total = sum(selected_count(component) * component.repeat for component in components)
        raise BuildError(
            f"a mixture of {total:,} samples does not fit in memory: check `take` and `repeat`"
        ) from None


def shard_copies(shard_index: int, slots: ShardSlots, entries: list[Entry]) -> list[SampleCopy]:
    """The shard's samples, in order, each keyed `<shard>_<position>`."""
    pairs = zip(slots.components.tolist(), slots.indices.tolist(), strict=True)
    return [
        entries[component].kept.copy(index, f"{shard_index:06d}_{position:06d}")
        for position, (component, index) in enumerate(pairs)
    ]
