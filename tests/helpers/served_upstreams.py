"""Upstreams served on loopback: archives packed in memory, and the project's manifests copied with
their https hosts moved under a loopback site (`<site>/<host>/<path>`, the layout of a mirror)."""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from pathlib import Path

from dataprep.recipe.upstreams import MANIFESTS


def zip_bytes(files: dict[str, bytes]) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    return archive.getvalue()


def tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as bundle:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return archive.getvalue()


def served_manifests(folder: Path, site_url: str, names: list[str] | None = None) -> Path:
    """Copy the project's manifests (or those `names`) into `folder`, every http(s) URL moved to
    `<site_url>/<host>/<path>`; hf:// URLs stay (serve them through HF_ENDPOINT)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if names is None or path.stem in names:
            text = re.sub(r"https?://(?!huggingface\.co)", f"{site_url}/", path.read_text())
            (folder / path.name).write_text(text)
    return folder
