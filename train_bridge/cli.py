"""`train-bridge sft` (the trainers' own layouts: `dataprep export`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import MISSING, fields
from types import NoneType
from typing import Any, Literal, get_args, get_origin, get_type_hints

from dataprep.contract.cli import add_version, at_least
from dataprep.contract.manifest import ManifestError
from dataprep.contract.store import LocationError
from train_bridge.config import TrainConfig
from train_bridge.errors import BridgeError

DEFAULTS_NOTE = "defaults are the InternVL-Chat-V1-2 hyper-parameters"


def _add_flags(parser: argparse.ArgumentParser, config: type) -> None:
    """One flag per field of the dataclass `config`, from its type, default and metadata (see
    `train_bridge.config.flag`): `--no-` too for a bool that defaults to true; choices from a Literal."""
    types = get_type_hints(config)
    for spec in fields(config):
        kind = types[spec.name]
        flag = "--" + spec.name.replace("_", "-")
        kwargs: dict[str, Any] = {"help": spec.metadata["help"]}
        if spec.default is MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = spec.default
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if spec.default else "store_true"
        elif get_origin(kind) is Literal:
            kwargs["choices"] = list(get_args(kind))
        else:
            kind = next(arg for arg in get_args(kind) or (kind,) if arg is not NoneType)
            low = spec.metadata["low"]
            if low is not None:
                kwargs["type"] = at_least(low)
            elif kind is not str:
                kwargs["type"] = kind
        parser.add_argument(flag, **kwargs)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train-bridge", description=__doc__)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    sft = sub.add_parser(
        "sft", help="supervised fine-tuning on the manifest's shards", description=DEFAULTS_NOTE
    )
    _add_flags(sft, TrainConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return _run(args)
    except (BridgeError, ManifestError, LocationError) as error:
        print(f"train-bridge {args.command}: error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from train_bridge.train import train

    records = train(TrainConfig(**{spec.name: getattr(args, spec.name) for spec in fields(TrainConfig)}))
    if records and os.environ.get("RANK", "0") == "0":
        print(json.dumps(records[-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
