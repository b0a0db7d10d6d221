"""Shared helpers of the grouped short-answer VQA adapter tests (DVQA, ChartQA, DocVQA)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from dataprep.contract.sample import conversation_problem
from dataprep.sample import Reject, Sample
from dataprep.sources.base import Source

SUFFIX = "\nAnswer the question using a single word or phrase."


@dataclass
class Read:
    """Everything a source yielded over all its units."""

    samples: dict[str, Sample]
    rejects: list[Reject]
    units_of: dict[str, str]

    @property
    def reasons(self) -> Counter[str]:
        return Counter(reject.reason for reject in self.rejects)


def read_all(source: Source) -> Read:
    """Read every unit, checking each sample's conversation and that no image is in two units."""
    samples: dict[str, Sample] = {}
    rejects: list[Reject] = []
    units_of: dict[str, str] = {}
    for unit in source.units():
        for record in source.read(unit):
            if isinstance(record, Reject):
                rejects.append(record)
                continue
            assert conversation_problem(record) is None, record
            assert record.id not in samples, f"{record.id} yielded twice"
            samples[record.id] = record
            units_of[record.id] = unit
    return Read(samples, rejects, units_of)


def pairs(sample: Sample) -> list[tuple[str, str]]:
    """The (human, gpt) texts of a conversation."""
    turns = sample.conversations
    return [(turns[i].value, turns[i + 1].value) for i in range(0, len(turns), 2)]


def expected_pairs(questions: list[str], answers: list[str], suffix: str = SUFFIX) -> list[tuple[str, str]]:
    """The turns a conversation must have: `<image>\\n` opens the first question only."""
    return [
        (("<image>\n" if index == 0 else "") + question + suffix, answer)
        for index, (question, answer) in enumerate(zip(questions, answers, strict=True))
    ]
