"""The command lines' shared bounded-integer argument: one message, exit 2, for both tools."""

from __future__ import annotations

import argparse

import pytest

from dataprep.contract.cli import at_least


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--workers", type=at_least(1))
    return parser


def test_an_integer_at_or_above_the_bound_is_read():
    assert parser().parse_args(["--workers", "1"]).workers == 1 and at_least(0)("0") == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "argument --workers: must be at least 1, not 0"),
        ("two", "argument --workers: invalid int value: 'two'"),
    ],
)
def test_anything_else_exits_2_naming_the_argument(value, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parser().parse_args(["--workers", value])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
