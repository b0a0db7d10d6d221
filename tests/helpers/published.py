"""The reference recipe's upstreams as their publishers ship them, made from the miniature fixtures:
every public file packed as its manifest says it is published (archive names, inner layouts, hub
paths, SynthDoG's hashed shard names behind the hub's tree listing, Drive files behind Drive's
download URL and, for large ones, its virus scan warning page), served by a loopback site acting as
the mirror (`/<host>/<path>`) and as HF_ENDPOINT; the manual upstreams as folders to place by hand.

The packing is derived from the manifests (URL → served path, `to` / `members` inverted into archive
member names); the only per-upstream knowledge is which fixture files make each upstream's
conventional folder (`_layouts`), which of an upstream's archives holds which top-level paths
(`ARCHIVE_HOLDS`: VG's two zips, DVQA's two tars) and which Drive files are large (`DRIVE_WARNS`).
`publish_converted` adds InternVL's converted release (the second route) over the same images."""

from __future__ import annotations

import fnmatch
import io
import json
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import PIL.Image
import pyarrow.parquet as pq

from dataprep.fixtures import generate_all
from dataprep.recipe.model import drive_parts, hub_parts
from dataprep.recipe.upstreams import MANIFESTS, Upstream, load_catalogue

from helpers.served_upstreams import (
    Served,
    drive_served,
    hub_commit,
    hub_served,
    mirror_path,
    tar_gz_bytes,
    zip_bytes,
)

REFERENCE = Path(__file__).resolve().parents[2] / "recipes" / "internvl_chat_v1_2.yaml"
ARCHIVE_HOLDS = {  # an upstream with several archives: the folders each holds (its manifest's comments)
    "https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip": ("VG_100K",),
    "https://cs.stanford.edu/people/rak248/VG_100K_2/images2.zip": ("VG_100K_2",),
    "gdrive://1iKH2lTi1-QxtNUVRxTUWFvUvRHq6HAsZ/images.tar.gz": ("images",),
    "gdrive://1VKYd3kaiCFziSsSv4SgQJ2T5m7jxuh5u/qa.tar.gz": (
        "train_qa.json",
        "val_easy_qa.json",
        "val_hard_qa.json",
    ),
}
DRIVE_WARNS = {  # Drive files served behind the large-file warning page (the others come at once)
    "1iKH2lTi1-QxtNUVRxTUWFvUvRHq6HAsZ",  # DVQA's images.tar.gz
    "1FxB2Nw-vWUcTUSI_dBpPIykb-uGYoEqV",  # wikiart.zip
}
SYNTHDOG_SHARDS = (  # the fixture writes train shards 0 and 1; 2-4 repeat shard 1 under their own names
    "train-00002-of-00084-7d1e4b9a0c3f5e28.parquet",
    "train-00003-of-00084-b6a2f0e8d4c1937e.parquet",
    "train-00004-of-00084-3c9e7a5d1f0b8264.parquet",
)


@dataclass
class Published:
    """`served`: what the mirror and hub answer; `urls`: every published file's URL → its bytes;
    `manual`: upstream name → its conventional folder, to copy into `<data_root>/<folder>`; `layouts`
    (public) and `manual_layouts`: upstream name → {path under its folder: bytes}, what a fetch (or a
    person) leaves there."""

    served: Served = field(default_factory=Served)
    urls: dict[str, bytes] = field(default_factory=dict)
    manual: dict[str, Path] = field(default_factory=dict)
    layouts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    manual_layouts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    catalogue: dict[str, Upstream] = field(default_factory=dict)
    fixtures: Path = Path()
    facts: dict[str, dict] = field(default_factory=dict)  # the fixtures' facts, by source

    def place_manual(self, data_root: Path) -> None:
        """What a person does for the manual upstreams: their folders, laid out by hand."""
        for name, folder in self.manual.items():
            shutil.copytree(folder, data_root / self.catalogue[name].folder, dirs_exist_ok=True)


def served_path(url: str) -> str:
    """The path a fetch GETs `url`'s bytes from: as a mirror (`/<host>/<path>`), as Drive (its download
    URL, or the confirmed one of a large file) or as HF_ENDPOINT (resolved at the revision's commit)."""
    if url.startswith("hf://"):
        return hub_served(url, b"").transfers[0]
    if url.startswith("gdrive://"):
        return drive_served(url, b"", drive_parts(url)[0] in DRIVE_WARNS).transfers[-1]
    return mirror_path(url)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _under(tree: dict[str, bytes], prefix: str) -> dict[str, bytes]:
    return {path.removeprefix(prefix): data for path, data in tree.items() if path.startswith(prefix)}


def _layouts(fixtures: Path) -> tuple[dict[str, dict[str, bytes]], dict[str, dict[str, bytes]]]:
    """Each upstream's conventional folder, from the fixtures: (public upstreams, manual ones)."""
    share = _tree(fixtures / "sharegpt4v")
    zh = _tree(fixtures / "llava_zh")
    synthdog = _tree(fixtures / "synthdog_en")
    shard_1 = next(data for path, data in synthdog.items() if "/train-00001-" in path)
    ai2d = _tree(fixtures / "ai2d")
    public = {
        "sharegpt4v": {p: d for p, d in share.items() if p.startswith("sharegpt4v_")},
        "llava_zh": {"llava_instruct_150k_zh.json": zh["llava_instruct_150k_zh.json"]},
        "coco_train2017": {**_under(share, "coco/"), **_under(zh, "coco/")},
        "llava_pretrain": _under(share, "llava/llava_pretrain/"),
        "gqa": _under(share, "gqa/"),
        "textvqa": _under(share, "textvqa/"),
        "vg": _under(share, "vg/"),
        "chartqa": _tree(fixtures / "chartqa"),
        "ai2d": ai2d,
        "docvqa": {p: d for p, d in _tree(fixtures / "docvqa").items() if p.startswith("train/")},
        "share_textvqa": _under(share, "share_textvqa/"),
        "web_celebrity": _under(share, "data/web-celebrity/"),
        "web_landmark": _under(share, "web-landmark/"),
        "wikiart": _under(share, "wikiart/"),
        "dvqa": {
            p: d
            for p, d in _tree(fixtures / "dvqa").items()
            if p.startswith("images/") or p.endswith("_qa.json")
        },
        "synthdog_en": {
            **{p: d for p, d in synthdog.items() if "/train-" in p},
            **{f"data/{name}": shard_1 for name in SYNTHDOG_SHARDS},
        },
    }
    manual = {
        "sam": _under(share, "sam/"),
        "ocr_vqa": _under(share, "ocr_vqa/"),
        "geoqa_plus": _tree(fixtures / "geoqa_plus"),
    }
    return public, manual


def _member(path: str, to: str | None, members: dict[str, str]) -> str | None:
    """The archive member that unpacks (with `to` and `members`) to `path` under the upstream's folder."""
    inside = PurePosixPath(path)
    if to is not None:
        if not inside.is_relative_to(to):
            return None
        inside = inside.relative_to(to)
    if not members:
        return inside.as_posix()
    for member, folder in members.items():
        if folder == "." or inside.is_relative_to(folder):
            rest = inside if folder == "." else inside.relative_to(folder)
            return (PurePosixPath(member) / rest).as_posix()
    return None


def _pack(upstream: Upstream, layout: dict[str, bytes]) -> dict[str, bytes]:
    """`upstream`'s files by URL (a glob's by the name it stands for), each packed from its part of
    `layout` as its manifest says."""
    published = {}
    loose = set()
    for download in upstream.downloads():
        if download.unpack:
            continue
        name = PurePosixPath(download.url)
        folder = PurePosixPath(download.to or ".")
        matched = [p for p in layout if fnmatch.fnmatchcase(p, (folder / name.name).as_posix())]
        assert len(matched) == 1, (upstream.name, download.url, matched)
        loose.add(matched[0])
        real = download.url.removesuffix(name.name) + PurePosixPath(matched[0]).name
        published[real] = layout[matched[0]]
    for download in upstream.downloads():
        if not download.unpack:
            continue
        holds = ARCHIVE_HOLDS.get(download.url)
        members = {}
        for path, data in layout.items():
            if path in loose or (holds and PurePosixPath(path).parts[0] not in holds):
                continue
            member = _member(path, download.to, download.members)
            if member is not None:
                members[member] = data
        assert members, (upstream.name, download.url)
        pack = tar_gz_bytes if download.file_name.endswith((".tar.gz", ".tgz")) else zip_bytes
        published[download.url] = pack(members)
    return published


def serve_files(published: dict[str, bytes]) -> Served:
    """Files by URL → what a loopback site answers for them as the mirror, as Drive and as the hub,
    with the hub's tree listing (`/api/<kind>/<owner>/<name>/tree/<rev>`, as huggingface_hub asks for
    it) of every hub repo."""
    served = Served()
    listings: dict[str, list[dict]] = {}
    for url, data in sorted(published.items()):
        if url.startswith("hf://"):
            served |= hub_served(url, data)
            kind, owner, name, revision, path = hub_parts(url)
            listings.setdefault(f"/api/{kind}/{owner}/{name}/tree/{revision}", []).append(
                {"type": "file", "path": path, "size": len(data), "oid": hub_commit(url)}
            )
        elif url.startswith("gdrive://"):
            served |= drive_served(url, data, drive_parts(url)[0] in DRIVE_WARNS)
        else:
            served |= Served({mirror_path(url): data}, {}, [mirror_path(url)])
    listed = {path: json.dumps(listing).encode() for path, listing in listings.items()}
    return served | Served(listed)


def publish(work: Path) -> Published:
    """Generate the fixtures under `work/fixtures` and publish every upstream the reference recipe
    names: public ones packed and served, manual ones as folders under `work/manual/<name>`."""
    facts = generate_all(work / "fixtures")
    public, manual = _layouts(work / "fixtures")
    catalogue = load_catalogue(MANIFESTS)
    published = Published(
        layouts=public, manual_layouts=manual, catalogue=catalogue, fixtures=work / "fixtures", facts=facts
    )
    for name, layout in public.items():
        assert catalogue[name].public, name
        published.urls |= _pack(catalogue[name], layout)
    published.served = serve_files(published.urls)
    for name, layout in manual.items():
        assert not catalogue[name].public, name
        folder = published.manual[name] = work / "manual" / name
        for path, data in layout.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
    return published


CONVERTED = {  # InternVL's converted file → the upstreams whose images its lines name
    "ai2d_train_12k.jsonl": ["ai2d"],
    "chartqa_train_18k.jsonl": ["chartqa"],
    "docvqa_train_10k.jsonl": ["docvqa"],
    "dvqa_train_200k.jsonl": ["dvqa"],
    "geoqa+.jsonl": ["internvl_geoqa_plus_images"],
    "llava_instruct_150k_zh.jsonl": ["coco_train2017"],
    "sharegpt4v_instruct_gpt4-vision_cap100k.jsonl": ["coco_train2017", "llava_pretrain", "sam"],
    "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.jsonl": [
        "coco_train2017",
        "llava_pretrain",
        "sam",
        "gqa",
        "ocr_vqa",
        "textvqa",
        "vg",
        "share_textvqa",
        "web_celebrity",
        "web_landmark",
        "wikiart",
    ],
    "synthdog_en.jsonl": ["internvl_synthdog_en_images"],
}


def _converted_images(fixtures: Path) -> dict[str, dict[str, bytes]]:
    """InternVL's image zips of GeoQA+ (the pickles' figures as PNG) and SynthDoG-EN (the parquet
    shards' pages), as their `images/` folders."""
    geoqa = {}
    for record in pickle.loads((fixtures / "geoqa_plus/GeoQA-train.pk").read_bytes()):
        png = io.BytesIO()
        PIL.Image.fromarray(record["image"]).save(png, "PNG")
        geoqa[f"images/{record['id']}.png"] = png.getvalue()
    synthdog = {}
    for shard in sorted((fixtures / "synthdog_en/data").glob("train-*.parquet")):
        for row, image in enumerate(pq.read_table(shard).column("image").to_pylist()):
            synthdog[f"images/{shard.stem}_{row}.jpg"] = image["bytes"]
    return {"internvl_geoqa_plus_images": geoqa, "internvl_synthdog_en_images": synthdog}


def publish_converted(published: Published) -> Served:
    """InternVL's converted release over the same fixture images: the nine jsonl files (one line in
    InternVL's format per image, paths relative to the data root) and its GeoQA+ and SynthDoG-EN
    image zips, as served (the raw upstreams' archives hold the other images)."""
    catalogue = published.catalogue
    images = {**published.layouts, **published.manual_layouts, **_converted_images(published.fixtures)}
    jsonl = {}
    for file, upstreams in CONVERTED.items():
        lines = []
        for name in upstreams:
            for path in sorted(images[name]):
                if PurePosixPath(path).suffix.lower() not in {".jpg", ".png"}:
                    continue
                image = f"{catalogue[name].folder}/{path}"
                turns = [
                    {"from": "human", "value": "<image>\nWhat does this image show?"},
                    {"from": "gpt", "value": f"The file {PurePosixPath(path).name}."},
                ]
                lines.append({"id": len(lines), "image": image, "conversations": turns})
        jsonl[file] = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    urls = _pack(catalogue["internvl_chat_v1_2_sft_data"], jsonl)
    for name in ("internvl_geoqa_plus_images", "internvl_synthdog_en_images"):
        urls |= _pack(catalogue[name], images[name])
    return serve_files(urls)
