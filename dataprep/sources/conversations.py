"""Your own (or InternVL's converted) LLaVA-schema conversation files: `.jsonl` or a `.json` array.

Records are `{"id", "image"?, "width"?, "height"?, "conversations": [...]}` with `image` a path
(or a list of paths, one per `<image>`) relative to `image_root`; no `image` or `""` is a
text-only conversation. Text is kept exactly as written; the `<image>` placeholders stay where
the record put them (`image_placement: keep`), except that a single-image record whose human
turns hold none gets "<image>\\n" prepended, as InternVL's trainer does.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from dataprep.sources._llava_records import (
    ImagePlacement,
    ImageRootOptions,
    ImageRootSource,
    annotation_kind,
    under,
)


class ConversationsOptions(ImageRootOptions):
    """`file` or `files`: annotation files relative to the source path (or absolute);
    `image_root`: the folder image paths are relative to (relative to the source path)."""

    file: str | None = None
    files: tuple[str, ...] = Field((), strict=False)  # a YAML list
    image_placement: ImagePlacement = "keep"

    @model_validator(mode="after")
    def _one_way_to_name_files(self) -> ConversationsOptions:
        if (self.file is None) == (not self.files):
            raise ValueError("give exactly one of `file` (one annotation file) or `files` (a list)")
        for name in self.names():
            annotation_kind(name)
        return self

    def names(self) -> list[str]:
        """The annotation files as the recipe names them."""
        return [self.file] if self.file is not None else list(self.files)


class Conversations(ImageRootSource):
    """LLaVA/InternVL conversation records from `.jsonl` files or `.json` arrays."""

    name = "conversations"
    licence = "user-supplied: the terms of the data's owner (not checked)"
    version = "2"
    Options = ConversationsOptions
    options: ConversationsOptions

    def annotation_files(self) -> list[Path]:
        return [under(self.root, name) for name in self.options.names()]
