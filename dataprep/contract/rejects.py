"""`rejects.jsonl`: one line per record a build read and did not keep, with the reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dataprep.files import canonical_json


@dataclass(frozen=True, slots=True)
class RejectLine:
    """A rejected record: its entry's label (`source`), its original id, a machine-readable reason, a
    human-readable detail, and the work unit that read it."""

    source: str
    id: str
    reason: str
    detail: str
    unit: str

    def to_bytes(self) -> bytes:
        """The line as `rejects.jsonl` holds it: canonical JSON and a newline."""
        return canonical_json(asdict(self)) + b"\n"
