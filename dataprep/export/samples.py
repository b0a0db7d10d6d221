"""The samples of a build as exports read them: through the contract, checked, in shard order, with
repeated copies marked and each sample's token length.

A source the recipe repeats (`repeat: N`) holds every chosen sample N times under other keys; a
later copy (same sample json and image bytes as an earlier one of its source) names the first one,
whose image files it shares, so exports write images once and InternVL's writes a line once with
`repeat_time`.

A build whose files do not read as its manifest says (a shard missing, of another size, short of
samples or holding one outside the contract, a token sidecar unlike the manifest) is an
`UnreadableBuild`, named in one line."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dataprep.contract.manifest import Manifest, ShardReport
from dataprep.contract.sample import ShardSample
from dataprep.contract.shards import iter_samples
from dataprep.contract.store import Location
from dataprep.contract.token_counts import TokenSidecar, read_token_sidecar
from dataprep.export.folder import ExportError, ExportFolder
from dataprep.files import sha256_file
from dataprep.tokens import TokenCounter, TokenSettings, tokenizer_file

DEFAULT_IMAGE_TOKENS = 256  # InternVL-Chat-V1-2: (448 / 14)² × 0.5²


class UnreadableBuild(ExportError):
    """The build's files are not as its manifest says; the message names the file."""


@dataclass(frozen=True)
class ExportSample:
    """One sample of the mixture, from the shard at `shard` (its path in the manifest). `copy`
    counts the earlier copies of the same content in its source (0: the first; later ones share the
    image files of `image_key`); `images` holds its image bytes by suffix; `length` is its token
    length, None when no tokenizer is known."""

    shard: str
    key: str
    sample: ShardSample
    images: dict[str, bytes]
    image_key: str
    copy: int
    length: int | None

    def image_paths(self) -> list[str]:
        """Its image files inside an export: `images/<source>/<key>.<suffix>`, in the sample's order."""
        return [f"images/{self.sample.source}/{self.image_key}.{suffix}" for suffix in self.sample.images]


class Lengths:
    """Token lengths (every turn's text, without `<image>` and special tokens, plus `image_tokens` per
    image): from the build's token sidecars when they were counted with the same tokenizer (or none is
    given), their text part re-weighted for another `image_tokens`; else counted with `tokenizer`;
    unknown without either (or when not `from_build` and no tokenizer is given)."""

    def __init__(
        self,
        manifest: Manifest,
        manifest_path: Location,
        tokenizer: Path | None,
        image_tokens: int | None,
        from_build: bool = True,
    ) -> None:
        self._folder = manifest_path.parent
        built = manifest.stats.tokens if from_build else None
        file = None if tokenizer is None else tokenizer_file(tokenizer)
        if file is not None and not file.is_file():
            raise ExportError(f"--tokenizer {tokenizer}: no tokenizer.json there")
        sha256 = None if file is None else sha256_file(file)
        self.from_sidecars = (
            built is not None
            and all(shard.tokens for shard in manifest.shards)
            and sha256 in (None, built.tokenizer_sha256)
        )
        self.tokenizer_sha256 = built.tokenizer_sha256 if self.from_sidecars and built else sha256
        default = built.image_tokens if self.from_sidecars and built else DEFAULT_IMAGE_TOKENS
        self.image_tokens = default if image_tokens is None else image_tokens
        self._counter = (
            TokenCounter(TokenSettings(str(file), sha256, self.image_tokens))
            if file is not None and sha256 is not None and not self.from_sidecars
            else None
        )

    @property
    def known(self) -> bool:
        return self.from_sidecars or self._counter is not None

    def describe(self) -> dict[str, object]:
        """How the lengths were made, for the export's summary."""
        how = "build's token sidecars" if self.from_sidecars else "tokenized"
        return {"from": how, "tokenizer_sha256": self.tokenizer_sha256, "image_tokens": self.image_tokens}

    def of_shard(self, shard: ShardReport, samples: list[tuple[str, ShardSample]]) -> list[int | None]:
        if self.from_sidecars:
            sidecar = self._sidecar(shard)
            missing = [key for key, _ in samples if key not in sidecar.tokens]
            if missing:
                raise UnreadableBuild(f"{shard.tokens}: no token count for sample {missing[0]}")
            return [
                sidecar.tokens[key] + (self.image_tokens - sidecar.image_tokens) * len(sample.images)
                for key, sample in samples
            ]
        if self._counter is not None:
            return list(self._counter.count_all([sample.to_json() for _, sample in samples]))
        return [None] * len(samples)

    def _sidecar(self, shard: ShardReport) -> TokenSidecar:
        assert shard.tokens is not None
        path = self._folder / shard.tokens
        if not path.exists() or sha256_file(path) != shard.tokens_sha256:
            raise UnreadableBuild(f"{path}: missing, or its sha256 differs from the manifest")
        try:
            return read_token_sidecar(path)
        except ValueError as error:
            raise UnreadableBuild(str(error)) from None


def check_shards(manifest: Manifest, manifest_path: Location) -> list[Location]:
    """The shards' paths, once each is found with the manifest's size (before anything is written)."""
    paths = manifest.shard_paths(manifest_path)
    for path, shard in zip(paths, manifest.shards, strict=True):
        if not path.exists():
            raise UnreadableBuild(f"{path}: missing")
        if path.stat().st_size != shard.bytes:
            raise UnreadableBuild(f"{path}: {path.stat().st_size} bytes, manifest says {shard.bytes}")
    return paths


def read_mixture(manifest: Manifest, paths: list[Location], lengths: Lengths) -> Iterator[ExportSample]:
    """Every sample of the build (its shards at `paths`) in shard order; a sample outside the
    contract, a name that cannot be a file, or a shard without the manifest's number of samples
    stops with one line."""
    repeats = {source.name: source.repeat for source in manifest.sources if source.repeat > 1}
    firsts: dict[bytes, tuple[str, int]] = {}
    for path, shard in zip(paths, manifest.shards, strict=True):
        samples = list(_shard_samples(path, shard))
        for (key, sample, images), length in zip(
            samples, lengths.of_shard(shard, [(key, sample) for key, sample, _ in samples]), strict=True
        ):
            if sample.source not in repeats:
                yield ExportSample(shard.path, key, sample, images, key, 0, length)
                continue
            digest = _content_digest(sample, images)
            first_key, copies = firsts.get(digest, (key, 0))
            firsts[digest] = (first_key, copies + 1)
            yield ExportSample(shard.path, key, sample, images, first_key, copies, length)


def _shard_samples(path: Location, shard: ShardReport) -> Iterator[tuple[str, ShardSample, dict[str, bytes]]]:
    count = 0
    try:
        for key, sample, images in iter_samples(path):
            _safe_name(sample.source, f"{path.name}: source")
            _safe_name(key, f"{path.name}: sample key")
            for suffix in images:
                _safe_name(suffix, f"{path.name}: image suffix")
            yield key, sample, images
            count += 1
    except UnreadableBuild:
        raise
    except Exception as error:  # a tar, sample json or member outside the shard contract
        raise UnreadableBuild(
            f"{path}, sample {count} cannot be exported ({type(error).__name__}: {error})"
        ) from None
    if count != shard.samples:
        raise UnreadableBuild(f"{path}: {count} samples, manifest says {shard.samples}")


def _safe_name(name: str, what: str) -> str:
    """`name` when it can name one file inside a folder (not empty, no separator, no leading dot)."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise UnreadableBuild(f"{what} {name!r} cannot name a file or folder")
    return name


def _content_digest(sample: ShardSample, images: dict[str, bytes]) -> bytes:
    """What makes two copies of one sample the same: its json and its image bytes."""
    digest = hashlib.sha256(sample.to_bytes())
    for suffix in sample.images:
        digest.update(hashlib.sha256(images[suffix]).digest())
    return digest.digest()


def write_images(folder: ExportFolder, exported: ExportSample) -> list[str]:
    """Write a first copy's images (their original bytes); the paths of its images in the export."""
    paths = exported.image_paths()
    if exported.copy == 0:
        for suffix, path in zip(exported.sample.images, paths, strict=True):
            folder.write(path, exported.images[suffix])
    return paths
