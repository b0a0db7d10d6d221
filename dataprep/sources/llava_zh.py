"""LLaVA-ZH (`openbmb/llava_zh`): the Chinese LLaVA-Instruct-150K, one JSON array.

`llava_instruct_150k_zh.json` holds LLaVA-schema multi-turn records on COCO train2017 images;
`image` is either a bare `000000033471.jpg` or `train2017/000000033471.jpg`, both read from
`<image_root>/train2017/`. Text is kept byte-exact; the single `<image>` moves to the start of
the first human turn.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator

from dataprep.sample import ImageFile
from dataprep.sources._llava_records import ImageRootOptions, ImageRootSource, annotation_kind, under

COCO_SPLIT = "train2017"


class LlavaZhOptions(ImageRootOptions):
    """`file`: the annotation file under the source path (`.json` array or converted `.jsonl`);
    `image_root`: the COCO root holding `train2017/` (relative to the source path)."""

    file: str = "llava_instruct_150k_zh.json"
    image_root: str = "coco"

    @field_validator("file")
    @classmethod
    def _known_kind(cls, name: str) -> str:
        annotation_kind(name)
        return name


class LlavaZh(ImageRootSource):
    """Chinese LLaVA-Instruct-150K conversations on COCO train2017."""

    name = "llava_zh"
    licence = "none stated"
    citation = "Liu, Li, Wu, Lee. Visual Instruction Tuning. NeurIPS 2023 (LLaVA-Instruct-150K, here in the Chinese translation openbmb/llava_zh)."
    version = "2"
    Options = LlavaZhOptions
    options: LlavaZhOptions

    def annotation_files(self) -> list[Path]:
        return [under(self.root, self.options.file)]

    def image(self, name: str) -> ImageFile:
        return ImageFile(self.image_root, name if "/" in name else f"{COCO_SPLIT}/{name}")
