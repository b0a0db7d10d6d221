"""Source adapters, discovered from the modules of this package (`base` is their protocol; modules
named `_*` are helpers that adapters share)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from dataprep.sources.base import Source


@cache
def registry() -> dict[str, type[Source]]:
    """Every adapter by its recipe name."""
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base" and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    found: dict[str, type[Source]] = {}
    pending = list(Source.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if vars(cls).get("name"):  # its own name: a subclass inheriting one is not another adapter
            found[cls.name] = cls
    return dict(sorted(found.items()))
