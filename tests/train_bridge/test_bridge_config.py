"""TrainConfig: each field carries the help and (integers) the least value its flag is made from."""

from __future__ import annotations

import typing
from dataclasses import MISSING, fields

from train_bridge.config import TrainConfig


def test_every_field_has_a_help_and_every_integer_a_least_value() -> None:
    hints = typing.get_type_hints(TrainConfig)
    for spec in fields(TrainConfig):
        assert spec.metadata["help"], spec.name
        integer = int in (hints[spec.name], *typing.get_args(hints[spec.name]))
        assert (spec.metadata["low"] is not None) == integer, spec.name


def test_the_required_fields_come_first_and_the_defaults_are_v1_2s() -> None:
    required = [spec.name for spec in fields(TrainConfig) if spec.default is MISSING]
    assert required == ["manifest", "model", "tokenizer", "out"]
    config = TrainConfig(manifest="m", model="v1_2", tokenizer="t", out="o")
    assert (config.global_batch, config.micro_batch, config.lr, config.max_length) == (512, 8, 1e-5, 2048)
    assert (config.warmup_ratio, config.weight_decay, config.grad_clip, config.epochs) == (0.03, 0.05, 1.0, 1)
