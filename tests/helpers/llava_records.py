"""Shared helper of the conversation-file adapter tests (conversations, sharegpt4v, llava_zh)."""

from __future__ import annotations

from collections import Counter

from dataprep.images import DeclaredRoots, ImageRejected, file_limit, load_bytes
from dataprep.recipe.model import ImagePolicy
from dataprep.sample import Sample
from dataprep.sources.base import Source


def engine_rejects(source: Source, samples: list[Sample]) -> Counter[str]:
    """Reason → count of the samples the engine's image loading rejects (missing, escaping, ...)."""
    reasons: Counter[str] = Counter()
    roots = DeclaredRoots(source.roots())
    for sample in samples:
        try:
            for image in sample.images:
                load_bytes(image, roots, file_limit(ImagePolicy()))
        except ImageRejected as rejected:
            reasons[rejected.reason] += 1
    return reasons
