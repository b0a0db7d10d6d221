"""What both command lines (`dataprep`, `train-bridge`) share: how a bounded integer argument is read,
and `--version`."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any


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
    """`--version`: the installed `dataprep` distribution's version (both commands ship in it)."""
    parser.add_argument("--version", action=_Version, help="show the version and exit")


class _Version(argparse.Action):
    """Prints the version, looked up only when asked for (`importlib.metadata` costs ~20 ms of every
    start: a build starts its workers sooner without it)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        import importlib.metadata

        print(f"{parser.prog} {importlib.metadata.version('dataprep')}")
        parser.exit()
