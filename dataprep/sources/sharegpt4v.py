"""ShareGPT4V (`Lin-Chen/ShareGPT4V`): three LLaVA-schema JSON arrays over many image sets.

`path` is the data root holding the image folders (`coco/train2017/`, `sam/images/`,
`llava/llava_pretrain/images/`, `gqa/images/`, `ocr_vqa/images/`, `textvqa/train_images/`,
`vg/VG_100K/`, `vg/VG_100K_2/`, `share_textvqa/images/`, `web-celebrity/images/`,
`web-landmark/images/`, `wikiart/images/`); record `image` paths are relative to it.
The `<image>` placeholder moves to the start of the first human turn (cap100k puts it after
the question); records without `image` stay text-only. The web-* zips unpack one level deeper
(`data/web-celebrity/images/...`): an image absent at its recorded place is looked for under
each `image_fallback_dirs` folder before it is left to the engine to reject as missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from dataprep.paths import UnsafePath
from dataprep.sample import ImageFile
from dataprep.sources._llava_records import ConversationFileOptions, ConversationFileSource, under

ANNOTATION_FILES = {
    "cap100k": "sharegpt4v_instruct_gpt4-vision_cap100k.json",
    "mix665k": "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json",
    "captioner1246k": "share-captioner_coco_lcs_sam_1246k_1107.json",
}

Subset = Literal["cap100k", "mix665k", "captioner1246k"]


class ShareGPT4VOptions(ConversationFileOptions):
    """`subset`: which annotation file; `annotation_dir`: where it is (relative to the source
    path); `image_fallback_dirs`: folders under the source path to try for an absent image."""

    subset: Subset
    annotation_dir: str = "."
    image_fallback_dirs: tuple[str, ...] = Field(("data",), strict=False)  # a YAML list


class ShareGPT4V(ConversationFileSource):
    """ShareGPT4V captions and the LLaVA-1.5 mixture they extend."""

    name = "sharegpt4v"
    licence = "CC BY-NC 4.0 (+ the terms of its image sets)"
    citation = "Chen, Li, Dong, Zhang, He, Wang, Zhao, Lin. ShareGPT4V: Improving Large Multi-Modal Models with Better Captions. arXiv:2311.12793, 2023."
    version = "2"
    Options = ShareGPT4VOptions
    options: ShareGPT4VOptions

    def annotation_files(self) -> list[Path]:
        return [under(self.root, self.options.annotation_dir) / ANNOTATION_FILES[self.options.subset]]

    def extra_meta(self) -> dict[str, Any]:
        return {"subset": self.options.subset}

    def image(self, name: str) -> ImageFile:
        for candidate in [name, *(f"{folder}/{name}" for folder in self.options.image_fallback_dirs)]:
            try:
                if os.path.isfile(self.file(candidate)):  # False, not OSError, for a name too long
                    return ImageFile(self.root, candidate)
            except UnsafePath:
                break
        return ImageFile(self.root, name)
