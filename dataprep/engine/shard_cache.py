"""Output shards written or reused by their markers (`.work/shards/<shard>.json`), published to the
output's store when it has one, and the shards of earlier plans removed. A marker records the hash of
the shard's sample copies (JSON key `plan`), the shard's sha256, size, samples, statistics, index
hash, token counts and their sidecar's hash, its file's size and mtime, and what was uploaded where
(`published`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dataprep.contract.shards import shard_index_path, tar_locations, write_shard_index
from dataprep.contract.store import ObjectPath
from dataprep.contract.token_counts import (
    SIDECAR_SUFFIX,
    TokenSidecar,
    token_sidecar_path,
    write_token_sidecar,
)
from dataprep.engine.publish import forget, publish, unpublish, withdraw_manifest
from dataprep.engine.runner import Job
from dataprep.engine.settings import WORK_DIR
from dataprep.files import PARTIAL_SUFFIX, FileStamp, canonical_json, sha256_file, write_atomic
from dataprep.recipe.model import Recipe
from dataprep.shard_writer import SampleCopy, ShardStats, Summary, TokenCount, shard_tokens, write_shard
from dataprep.tokens import TokenCounter, TokenSettings, tokenizer_file


@dataclass(frozen=True)
class TokenCounts:
    """A shard's token summaries per entry label, the key of the settings that counted them and the
    sha256 of its token sidecar (`None`, `None`, `None`: counted without a tokenizer; a sidecar hash
    of `None` with a key: counted before sidecars were written)."""

    key: str | None
    per_label: dict[str, Summary] | None
    sidecar_sha256: str | None = None


@dataclass(frozen=True)
class Published:
    """A shard and its index as uploaded: the shard object's URL, the sha256s uploaded, and both
    objects' stamps (size, mtime) just after."""

    url: str
    sha256: str
    index_sha256: str
    shard: FileStamp
    index: FileStamp

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> Published:
        return cls(
            fields["url"],
            fields["sha256"],
            fields["index_sha256"],
            FileStamp.from_json(fields["shard"]),
            FileStamp.from_json(fields["index"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "sha256": self.sha256,
            "index_sha256": self.index_sha256,
            "shard": self.shard.to_json(),
            "index": self.index.to_json(),
        }


@dataclass(frozen=True)
class ShardMarker:
    """A complete shard's marker. `tokens` is None in markers of versions before token counts."""

    copies_sha256: str
    sha256: str
    bytes: int
    samples: int
    stats: ShardStats
    index_sha256: str | None
    tokens: TokenCounts | None
    stat: FileStamp | None  # the shard file's size and mtime when it was last checked
    published: Published | None = None  # uploaded to the output's store

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> ShardMarker | None:
        """The marker of a complete shard; None for one naming only the copies' hash (cut off)."""
        if "sha256" not in fields:
            return None
        tokens = None
        if "tokens_key" in fields:
            per_label = fields["tokens"]
            tokens = TokenCounts(
                fields["tokens_key"],
                None
                if per_label is None
                else {name: Summary(**values) for name, values in per_label.items()},
                fields.get("tokens_sidecar_sha256"),
            )
        stat, published = fields.get("stat"), fields.get("published")
        return cls(
            copies_sha256=fields["plan"],
            sha256=fields["sha256"],
            bytes=fields["bytes"],
            samples=fields["samples"],
            stats=ShardStats.from_json(fields["stats"]),
            index_sha256=fields.get("index_sha256"),
            tokens=tokens,
            stat=None if stat is None else FileStamp.from_json(stat),
            published=None if published is None else Published.from_json(published),
        )

    def to_json(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "plan": self.copies_sha256,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "samples": self.samples,
            "stats": self.stats.to_json(),  # earlier markers held Infinity: written strict
        }
        if self.index_sha256 is not None:
            fields["index_sha256"] = self.index_sha256
        if self.tokens is not None:
            per_label = self.tokens.per_label
            fields["tokens_key"] = self.tokens.key
            fields["tokens"] = (
                None
                if per_label is None
                else {name: summary.to_json() for name, summary in per_label.items()}
            )
            if self.tokens.sidecar_sha256 is not None:
                fields["tokens_sidecar_sha256"] = self.tokens.sidecar_sha256
        if self.stat is not None:
            fields["stat"] = self.stat.to_json()
        if self.published is not None:
            fields["published"] = self.published.to_json()
        return fields


def copies_sha256(copies: list[SampleCopy]) -> str:
    """The hash a shard's marker records: every copy's fields, in order (as `dataclasses.asdict`
    gives them, without its per-value deep copies: 7× faster)."""
    rows = [{"key": c.key, "part": c.part, "members": c.members, "digest": c.digest} for c in copies]
    return hashlib.sha256(canonical_json(rows)).hexdigest()


@dataclass(frozen=True)
class ShardJob(Job):
    """One output shard, written unless one of the same copies is already complete: its marker
    records the copies' hash, the sha256 and the file's size and mtime; a file whose size or mtime
    differs is re-hashed. A kept shard whose token counts were made with other settings is
    re-counted, not rewritten. A marker naming only the copies' hash is written first: a shard cut
    off before its full marker is still known as a build's own (stale shards are removed by their
    markers). With a `store`, the shard and its index are then uploaded under `shards/` there,
    unless the marker says these bytes were and both objects are as they were left: their stamps
    in the store when the build listed it (`in_store`) are those recorded just after the upload."""

    path: Path
    marker: Path
    copies_sha256: str
    work_dir: Path
    copies: list[SampleCopy]
    tokens: TokenSettings | None
    store: ObjectPath | None = None
    in_store: tuple[FileStamp | None, FileStamp | None] = (None, None)  # the shard's and index's objects
    roots: tuple[str, ...] = ()  # the sources' real roots: the only ones a part's reference may name

    def run(self) -> ShardMarker:
        done = self._reuse() or self._write()
        return self._publish(done, self.store) if self.store else done

    def records(self, result: ShardMarker) -> int:
        return result.samples

    def done(self) -> ShardMarker | None:
        """The marker of a shard complete as it records (the file's size and mtime, its index and
        token sidecar) and, with a `store`, uploaded as the listed objects show; read without
        hashing the shard, writing anything or a request to the store; None otherwise."""
        recorded = self._recorded()
        if recorded is None:
            return None
        fields, done, stamp = recorded
        intact = (
            done.stat == stamp
            and _index_intact(self.path, done.index_sha256)
            and self._tokens_intact(done.tokens)
            and (self.store is None or self._in_store(done, self.store))
        )
        return done if intact and done.to_json() == fields else None

    def _recorded(self) -> tuple[dict[str, Any], ShardMarker, FileStamp] | None:
        """The complete marker of these copies, as read and parsed, and the shard file's stamp now;
        None without a shard file or such a marker."""
        if not (self.marker.exists() and self.path.exists()):
            return None
        fields = json.loads(self.marker.read_bytes())
        done = ShardMarker.from_json(fields)
        if done is None or done.copies_sha256 != self.copies_sha256:
            return None
        return fields, done, FileStamp.read(self.path)

    def _reuse(self) -> ShardMarker | None:
        """The complete shard's marker, brought up to date; None when the shard must be written."""
        recorded = self._recorded()
        if recorded is None:
            return None
        fields, done, stamp = recorded
        if done.stat != stamp and sha256_file(self.path) != done.sha256:
            return None
        kept = replace(
            done,
            stat=stamp,
            index_sha256=_index_sha256(self.path, done.index_sha256),
            tokens=self._kept_tokens(done.tokens),
        )
        if kept.to_json() != fields:
            write_atomic(self.marker, canonical_json(kept.to_json()))
        return kept

    def _write(self) -> ShardMarker:
        write_atomic(self.marker, canonical_json({"plan": self.copies_sha256}))
        counter = TokenCounter(self.tokens) if self.tokens else None
        result = write_shard(self.path, self.work_dir, self.copies, counter, roots=self.roots)
        done = ShardMarker(
            copies_sha256=self.copies_sha256,
            sha256=result.sha256,
            bytes=result.bytes,
            samples=result.samples,
            stats=result.stats,
            index_sha256=result.index_sha256,
            tokens=_with_sidecar(self.path, self.tokens, result.tokens),
            stat=FileStamp.read(self.path),
        )
        write_atomic(self.marker, canonical_json(done.to_json()))
        return done

    def _kept_tokens(self, recorded: TokenCounts | None) -> TokenCounts | None:
        """A kept shard's token counts: the recorded ones while made with these settings and their
        sidecar is intact, else counted again; without a tokenizer none (and no sidecar)."""
        if self._tokens_intact(recorded):
            return recorded
        if self.tokens is None:
            token_sidecar_path(self.path).unlink(missing_ok=True)
            return None if recorded is None else TokenCounts(None, None)
        return _with_sidecar(self.path, self.tokens, shard_tokens(self.path, TokenCounter(self.tokens)))

    def _tokens_intact(self, recorded: TokenCounts | None) -> bool:
        """Whether the recorded token counts stand: made with these settings, their sidecar as
        recorded (without a tokenizer: none recorded, and no sidecar)."""
        sidecar = token_sidecar_path(self.path)
        if self.tokens is None:
            return recorded in (None, TokenCounts(None, None)) and not sidecar.exists()
        return (
            recorded is not None
            and recorded.key == self.tokens.key
            and recorded.sidecar_sha256 is not None
            and sidecar.exists()
            and sha256_file(sidecar) == recorded.sidecar_sha256
        )

    def _publish(self, done: ShardMarker, store: ObjectPath) -> ShardMarker:
        """Upload the index, then the shard (the store's manifest goes first: objects change from
        here on); nothing when both objects are those the marker records."""
        if self._in_store(done, store):
            return done
        shard, index = store / "shards" / self.path.name, store / "shards" / shard_index_path(self.path).name
        assert done.index_sha256 is not None  # brought up to date by `_reuse`, or just written
        withdraw_manifest(self.work_dir, store)
        index_stamp = publish(shard_index_path(self.path), index)
        published = Published(
            shard.url, done.sha256, done.index_sha256, publish(self.path, shard), index_stamp
        )
        kept = replace(done, published=published)
        write_atomic(self.marker, canonical_json(kept.to_json()))
        return kept

    def _in_store(self, done: ShardMarker, store: ObjectPath) -> bool:
        """Whether the marker records these bytes uploaded to `store` and both objects were listed
        with the stamps recorded just after."""
        was = done.published
        return (
            was is not None
            and (was.url, was.sha256, was.index_sha256)
            == ((store / "shards" / self.path.name).url, done.sha256, done.index_sha256)
            and (was.shard, was.index) == self.in_store
        )


def _tokens_key(tokens: TokenSettings | None) -> str | None:
    return tokens.key if tokens else None


def _with_sidecar(shard: Path, tokens: TokenSettings | None, count: TokenCount | None) -> TokenCounts:
    """The shard's token counts as its marker records them, its token sidecar written first."""
    if tokens is None or count is None:
        return TokenCounts(None, None)
    sidecar = TokenSidecar(
        tokenizer_sha256=tokens.sha256, image_tokens=tokens.image_tokens, tokens=count.per_key
    )
    return TokenCounts(tokens.key, count.per_source, sha256_file(write_token_sidecar(shard, sidecar)))


def _index_sha256(shard: Path, recorded: str | None) -> str:
    """The kept shard's sidecar index, rewritten from its tar headers when missing or altered."""
    if recorded and _index_intact(shard, recorded):
        return recorded
    return sha256_file(write_shard_index(shard, tar_locations(shard)))


def _index_intact(shard: Path, recorded: str | None) -> bool:
    """Whether the shard's sidecar index is there with the recorded sha256."""
    index = shard_index_path(shard)
    return recorded is not None and index.exists() and sha256_file(index) == recorded


def token_settings(recipe: Recipe) -> TokenSettings | None:
    """The recipe's tokenizer, as the shard tasks count with it (and markers key their counts by)."""
    if recipe.tokens is None:
        return None
    file = tokenizer_file(Path(recipe.tokens.tokenizer)).absolute()
    return TokenSettings(str(file), sha256_file(file), recipe.tokens.image_tokens)


def remove_stale_shards(out: Path, keep: set[str], listed: set[str], store: ObjectPath | None = None) -> None:
    """Drop the shards earlier builds wrote (those with a marker, or in their manifest: any recipe
    name) that the current plan does not keep, with their sidecars, and unfinished `.partial` files;
    from the `store` too (first, with its manifest, while the markers still name them). Nothing
    else: a file a build did not write stays (`manifest validate` names it)."""
    folder, markers = out / "shards", out / WORK_DIR / "shards"
    marked = {marker.name.removesuffix(".json") for marker in markers.glob("*.tar.json")}
    stale = (set(listed) | marked) - keep
    if store and stale:
        shards = store / "shards"
        withdraw_manifest(out / WORK_DIR, store)
        forget(out / WORK_DIR, [str(token_sidecar_path(Path("shards", shard))) for shard in stale])
        unpublish(
            shards / path.name
            for shard in sorted(stale)
            for path in (Path(shard), shard_index_path(Path(shard)), token_sidecar_path(Path(shard)))
        )
    for shard in stale & marked:
        (markers / f"{shard}.json").unlink()
    for shard in stale:
        (folder / shard).unlink(missing_ok=True)
        shard_index_path(folder / shard).unlink(missing_ok=True)
        token_sidecar_path(folder / shard).unlink(missing_ok=True)
    if folder.exists():
        for path in folder.iterdir():
            if path.name.endswith(
                tuple(suffix + PARTIAL_SUFFIX for suffix in (".tar", ".idx.json", SIDECAR_SUFFIX))
            ):
                path.unlink()
