"""Shard statistics: stored in shard markers as JSON and merged back into the manifest."""

from __future__ import annotations

from dataprep.files import canonical_json
from dataprep.shard_writer import ShardStats, Summary


def test_summaries_round_trip_through_strict_json():
    stats = ShardStats()
    stats.add({"conversations": [{"value": "hi"}, {"value": "there"}], "images": [], "image_sizes": []})
    fields = stats.to_json()
    assert fields["image_width"] == {"count": 0, "total": 0.0}  # no infinite bounds: not JSON
    assert fields["turns"] == {"count": 1, "total": 2, "low": 2, "high": 2}
    assert canonical_json(fields)
    restored = ShardStats.from_json(fields)
    assert restored == stats
    restored.merge(ShardStats.from_json(fields))
    assert restored.text_chars == Summary(count=2, total=14, low=7, high=7)
    assert restored.image_width.report() == {"count": 0}
