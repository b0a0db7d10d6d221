"""The InternVL trainers an InternVL export is written for (`--trainer`): the current one, or the V1-2
release, which reads one image per line."""

from __future__ import annotations

from typing import Literal

Trainer = Literal["current", "v1_2"]
TRAINERS: tuple[Trainer, ...] = ("current", "v1_2")
