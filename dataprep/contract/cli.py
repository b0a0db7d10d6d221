"""What both command lines (`dataprep`, `train-bridge`) share: how a bounded integer argument is read,
and `--version`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from dataprep import __version__


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `low` (else exit 2 naming the argument and the bound)."""

    def check(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    check.__name__ = "int"  # argparse names the type in its "invalid int value" message
    return check


def add_version(parser: argparse.ArgumentParser) -> None:
    """`--version`: dataprep's version (both commands ship in it)."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
