"""A build's results as its manifest: per entry, per shard, totals, statistics, tokens, licences."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from dataprep import __version__
from dataprep.contract.manifest import Manifest, ShardReport, SourceReport, Stats, TokenStats, Totals
from dataprep.contract.shards import shard_index_path
from dataprep.contract.token_counts import token_sidecar_path
from dataprep.engine.entry import Entry
from dataprep.engine.shard_cache import ShardMarker
from dataprep.licences import strictest_terms
from dataprep.recipe.model import Recipe
from dataprep.shard_writer import ShardStats, Summary
from dataprep.tokens import TokenSettings


def token_stats(
    settings: TokenSettings | None, entries: list[Entry], markers: list[ShardMarker]
) -> TokenStats | None:
    """Per entry and over the whole mixture, merged from every shard's tally."""
    if settings is None:
        return None
    per_label = {entry.label: Summary() for entry in entries}
    for marker in markers:
        assert marker.tokens is not None and marker.tokens.per_label is not None  # counted with `settings`
        for label, summary in marker.tokens.per_label.items():
            per_label[label].merge(summary)
    overall = Summary()
    for summary in per_label.values():
        overall.merge(summary)
    return TokenStats(
        tokenizer_sha256=settings.sha256,
        image_tokens=settings.image_tokens,
        per_sample=overall.report(with_total=True),
        per_source={label: summary.report(with_total=True) for label, summary in per_label.items()},
    )


def _token_sidecar(name: str, marker: ShardMarker) -> dict[str, str]:
    """The shard report's `tokens` and `tokens_sha256`, when the shard has a token sidecar."""
    sha256 = marker.tokens.sidecar_sha256 if marker.tokens else None
    if sha256 is None:
        return {}
    return {"tokens": f"shards/{token_sidecar_path(Path(name)).name}", "tokens_sha256": sha256}


def make_manifest(
    recipe: Recipe,
    entries: list[Entry],
    shard_names: list[str],
    per_label: list[dict[str, int]],
    markers: list[ShardMarker],
    tokens: TokenStats | None,
    rejects: bytes,
    limit: int | None,
) -> Manifest:
    """The manifest of the shards `shard_names` (samples per entry label, markers: one per shard),
    without its reader files and content hash (`build` adds them)."""
    in_mixture = {entry.label: sum(counts[entry.label] for counts in per_label) for entry in entries}
    total = sum(in_mixture.values())
    stats = ShardStats()
    for marker in markers:
        stats.merge(marker.stats)
    sources = [
        SourceReport(
            name=entry.label,
            source=entry.entry.source,
            adapter_version=entry.adapter.version,
            licence=entry.adapter.licence,
            path=entry.entry.path,
            take=entry.entry.take,
            repeat=entry.entry.repeat,
            read=entry.read,
            kept=len(entry.kept),
            rejected=dict(sorted(Counter(reject.reason for reject in entry.rejects).items())),
            reencoded_images=entry.reencoded,
            in_mixture=in_mixture[entry.label],
            expected=entry.entry.expect,
            share=round(in_mixture[entry.label] / total, 6) if total else 0.0,
            artifacts=entry.artifacts,
            downloads=entry.downloads,
            citation=entry.adapter.citation,
        )
        for entry in entries
    ]
    shards = [
        ShardReport(
            path=f"shards/{name}",
            samples=marker.samples,
            bytes=marker.bytes,
            sha256=marker.sha256,
            per_source=counts,
            index=f"shards/{shard_index_path(Path(name)).name}",
            index_sha256=marker.index_sha256,
            **_token_sidecar(name, marker),
        )
        for name, marker, counts in zip(shard_names, markers, per_label, strict=True)
    ]
    licences = {source.name: source.licence for source in sources}
    return Manifest(
        tool_version=__version__,
        name=recipe.name,
        seed=recipe.seed,
        recipe=recipe.content(),
        recipe_sha256=recipe.sha256(),
        limit=limit,
        sources=sources,
        shards=shards,
        totals=Totals(
            read=sum(source.read for source in sources),
            kept=sum(source.kept for source in sources),
            rejected=sum(len(entry.rejects) for entry in entries),
            samples=total,
            shards=len(shards),
            bytes=sum(shard.bytes for shard in shards),
        ),
        stats=Stats(
            **{name: getattr(stats, name).report() for name in ShardStats.__dataclass_fields__}, tokens=tokens
        ),
        licences=licences,
        strictest_terms=strictest_terms(
            [source.licence for source in sources if source.in_mixture] or list(licences.values())
        ),
        rejects_sha256=hashlib.sha256(rejects).hexdigest(),
    )
