"""A deterministic, resumable stream of micro-batches over the manifest's shards.

Epoch order: the shards are permuted from (seed, epoch) and cut into windows of `window` shards;
the samples of each window are permuted too. With `length_group` G > 0, each run of G consecutive
samples of a window is then sorted by estimated length, longest first (as the HF Trainer's
`group_by_length` megabatches), so a micro-batch holds samples of similar length and little padding;
the estimate comes from the shard indexes alone: json bytes / 4 + image tokens per image member.

Position p of that order goes to rank p % R; a rank's samples form micro-batches b = 0, 1, ...;
micro-batch b is built by DataLoader worker (b - start) % W, so the loader yields batches start,
start+1, ... in order whatever W is. The position saved with a checkpoint is (epoch, next
micro-batch): a resumed run skips exactly the consumed batches, with any number of workers.

Samples are read by seeking to their members (each shard's sidecar index, or its tar headers when a
shard has none), following the shard contract of `dataprep.contract.shards`; windows keep reads within a few
shards. A sample's members are read in one read (one ranged request of a shard in a store).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dataprep.contract.manifest import ShardReport, load_manifest
from dataprep.contract.sample import ShardSample
from dataprep.contract.shards import (
    MemberLocation,
    group_samples,
    index_differs,
    member_locations,
    read_sample,
    shard_index_path,
    split_member_name,
)
from dataprep.contract.store import Location, location
from train_bridge import images
from train_bridge.errors import BridgeError
from train_bridge.template import IGNORE_INDEX, Overlong, encode


def index_shard(path: Location) -> list[dict[str, MemberLocation]]:
    """Member locations of each sample of a shard, in stored order (from its sidecar index, else
    from the tar headers)."""
    return [members for _, members in group_samples((loc.name, loc) for loc in member_locations(path))]


class ShardReader:
    """Random access to samples by (shard, index), with small LRU caches of indexes and handles."""

    def __init__(self, paths: Sequence[Location], cache: int = 32) -> None:
        self.paths = list(paths)
        self.cache = cache
        self._indexes: OrderedDict[int, list[dict[str, MemberLocation]]] = OrderedDict()
        self._handles: OrderedDict[int, BinaryIO] = OrderedDict()

    def _lru(self, table: OrderedDict, shard: int, make: Any) -> Any:
        if shard in table:
            table.move_to_end(shard)
        else:
            table[shard] = make()
            if len(table) > self.cache:
                _, old = table.popitem(last=False)
                if hasattr(old, "close"):
                    old.close()
        return table[shard]

    def read(self, shard: int, index: int) -> tuple[str, ShardSample, list[bytes]]:
        """(key, sample, image bytes in the sample's order), the sample checked against the contract."""
        members = self._lru(self._indexes, shard, lambda: index_shard(self.paths[shard]))[index]
        handle = self._lru(self._handles, shard, lambda: self.paths[shard].open("rb", buffering=0))
        start = min(member.offset for member in members.values())
        handle.seek(start)
        span = handle.read(max(member.offset + member.size for member in members.values()) - start)

        def get(member: MemberLocation) -> bytes:
            data = span[member.offset - start : member.offset - start + member.size]
            if len(data) != member.size:
                raise OSError(f"member {member.name} ends past the end of the shard")
            return data

        key = split_member_name(members["json"].name)[0]
        sample = read_sample(key, get(members["json"]), members)
        return key, sample, [get(members[suffix]) for suffix in sample.images]

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


def check_shards(paths: Sequence[Location], sizes: Sequence[int]) -> None:
    """Fail before training, not hours into it, when a shard is missing or not the manifest's size
    (`dataprep manifest validate` re-hashes them all)."""
    problems = [
        f"{path}: missing"
        if not path.exists()
        else f"{path}: {path.stat().st_size} bytes, manifest says {size}"
        for path, size in zip(paths, sizes, strict=True)
        if not path.exists() or path.stat().st_size != size
    ]
    if problems:
        raise BridgeError(f"{len(problems)} shard(s) do not match the manifest:\n" + "\n".join(problems))


def estimated_lengths(
    paths: Sequence[Location], shards: Sequence[ShardReport], image_tokens: int
) -> np.ndarray:
    """Per sample (shard-major numbering): json bytes / 4 + `image_tokens` per image member. Checks
    first that each shard's sidecar index is the manifest's and that its members make the manifest's
    samples, each with a json (else samples would be skipped, or read from another's bytes)."""
    lengths, problems = [], []
    for path, shard in zip(paths, shards, strict=True):
        if index_differs(path, shard.index_sha256):
            problems.append(f"{shard_index_path(path)}: sha256 differs from the manifest")
            continue
        try:
            samples = index_shard(path)
        except Exception as error:  # a sidecar or tar headers that cannot be read
            problems.append(f"{path}: cannot be indexed ({type(error).__name__}: {error})")
            continue
        if len(samples) != shard.samples or not all("json" in members for members in samples):
            problems.append(
                f"{path}: {sum('json' in m for m in samples)} sample jsons, manifest says {shard.samples}"
            )
            continue
        lengths.extend(members["json"].size // 4 + image_tokens * (len(members) - 1) for members in samples)
    if problems:
        raise BridgeError(f"{len(problems)} shard(s) do not match the manifest:\n" + "\n".join(problems))
    return np.asarray(lengths, dtype=np.int64)


def epoch_order(
    counts: Sequence[int],
    seed: int,
    epoch: int,
    window: int,
    lengths: np.ndarray | None = None,
    length_group: int = 0,
) -> np.ndarray:
    """Global sample ids (shard-major numbering) in this epoch's order."""
    rng = np.random.default_rng([seed, epoch])
    starts = np.concatenate([[0], np.cumsum(counts)])
    shards = rng.permutation(len(counts))
    parts = []
    for first in range(0, len(shards), window):
        ids = np.concatenate([np.arange(starts[s], starts[s + 1]) for s in shards[first : first + window]])
        ids = rng.permutation(ids)
        if lengths is not None and length_group > 1:
            for begin in range(0, len(ids), length_group):
                group = ids[begin : begin + length_group]
                ids[begin : begin + length_group] = group[np.argsort(-lengths[group], kind="stable")]
        parts.append(ids)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Encoder:
    """Turns one sample into ids, labels and prepared images (runs in DataLoader workers)."""

    tokenizer: Any
    image_size: int
    num_image_tokens: int
    max_length: int
    system: str
    overlong: Overlong = "truncate"
    gpu_decode: bool = False
    exact_decode: bool = False

    def __call__(self, record: dict[str, Any], blobs: list[bytes]) -> dict[str, Any]:
        return self.assemble(
            record,
            lambda: [
                images.prepare(blob, self.image_size, self.gpu_decode, self.exact_decode) for blob in blobs
            ],
        )

    def assemble(self, record: dict[str, Any], pixels: Callable[[], list[torch.Tensor]]) -> dict[str, Any]:
        """Tokens and labels of `record`; images from `pixels()`, called only when the sample is kept."""
        encoded = encode(
            self.tokenizer,
            record["conversations"],
            num_image_tokens=self.num_image_tokens,
            max_length=self.max_length,
            system=self.system,
            overlong=self.overlong,
        )
        if encoded.dropped:
            return {"dropped": encoded.dropped}
        return {
            "input_ids": encoded.input_ids,
            "labels": encoded.labels,
            "images": pixels(),
            "truncated": encoded.truncated,
        }


def collate(
    items: list[dict[str, Any]], pad_id: int, gpu_decode: bool, pad_multiple: int = 1
) -> dict[str, Any]:
    """Pad to the longest sample rounded up to `pad_multiple` (few distinct shapes: kernel plans and
    compiled graphs are reused); concatenate images in order. Never empty: a batch whose samples
    were all dropped becomes one padding row with no target."""
    kept = [item for item in items if "dropped" not in item]
    rows = [(item["input_ids"], item["labels"]) for item in kept] or [([pad_id], [IGNORE_INDEX])]
    length = -(-max(len(ids) for ids, _ in rows) // pad_multiple) * pad_multiple
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)  # the placeholder row: all 0
    for row, (ids, labs) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        if kept:
            attention_mask[row, : len(ids)] = 1
    pixels = [p for item in kept for p in item["images"]]
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": attention_mask,
        "images": pixels if gpu_decode or not pixels else torch.stack(pixels),
        "dropped": sum("dropped" in item for item in items),
        "truncated": sum(bool(item.get("truncated")) for item in kept),
    }


class ShardStream(IterableDataset):
    """Micro-batches of one rank, in a deterministic order; see the module docstring."""

    def __init__(
        self,
        manifest_path: str | Location,
        encoder: Encoder,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int | None = None,
        window: int = 16,
        drop_last: bool = True,
        pad_id: int = 0,
        pad_multiple: int = 1,
        length_group: int = 0,
    ) -> None:
        if window < 1:
            raise BridgeError(f"window must be at least 1 shard, not {window}")
        manifest = load_manifest(manifest_path)
        self.content_sha256 = manifest.content_sha256
        self.paths = manifest.shard_paths(location(manifest_path))
        check_shards(self.paths, [shard.bytes for shard in manifest.shards])
        self.counts = [shard.samples for shard in manifest.shards]
        self.sources = sorted({name for shard in manifest.shards for name in shard.per_source})
        self.encoder = encoder
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.seed = manifest.seed if seed is None else seed
        self.window = window
        self.drop_last = drop_last
        self.pad_id, self.pad_multiple = pad_id, pad_multiple
        self.length_group = length_group
        lengths = estimated_lengths(self.paths, manifest.shards, encoder.num_image_tokens)
        self.lengths = lengths if length_group > 1 else None
        self.epoch, self.start = 0, 0

    @property
    def total(self) -> int:
        return sum(self.counts)

    def batches_per_epoch(self) -> int:
        """Micro-batches per rank per epoch (equal on every rank when drop_last)."""
        if self.drop_last:
            return (self.total // self.world_size) // self.batch_size
        mine = len(range(self.rank, self.total, self.world_size))
        return -(-mine // self.batch_size)

    def set_position(self, epoch: int, start: int) -> None:
        """Where the next iterator begins: epoch and first micro-batch (call before `iter`)."""
        self.epoch, self.start = epoch, start

    def _locate(self, ids: np.ndarray) -> list[tuple[int, int]]:
        starts = np.cumsum(self.counts)
        shards = np.searchsorted(starts, ids, side="right")
        offsets = ids - np.concatenate([[0], starts])[shards]
        return list(zip(shards.tolist(), offsets.tolist(), strict=True))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        order = epoch_order(self.counts, self.seed, self.epoch, self.window, self.lengths, self.length_group)
        mine = order[self.rank :: self.world_size]
        reader = ShardReader(self.paths)
        try:
            for batch in range(self.start + worker, self.batches_per_epoch(), workers):
                ids = mine[batch * self.batch_size : (batch + 1) * self.batch_size]
                yield self._batch(reader, ids, batch, worker)
        except BridgeError as error:
            if info is None:
                raise
            yield {"error": str(error)}  # raised in a worker, it would reach the trainer as a traceback
        finally:
            reader.close()

    def _batch(self, reader: ShardReader, ids: np.ndarray, batch: int, worker: int) -> dict[str, Any]:
        items, keys, sources = [], [], []
        for shard, index in self._locate(ids):
            try:
                key, sample, blobs = reader.read(shard, index)
                if sample.source not in self.sources:  # metrics count samples per manifest source
                    raise ValueError(f"its source {sample.source!r} is none of the manifest's")
                keys.append(key)
                items.append(self.encoder(sample.to_json(), blobs))
            except Exception as error:  # never another sample in its place: stop, naming this one
                where = f"{self.paths[shard]}, sample {index}"
                raise BridgeError(
                    f"{where} cannot be read ({type(error).__name__}: {error}); "
                    "`dataprep manifest validate` re-hashes every shard"
                ) from error
            if "dropped" not in items[-1]:
                sources.append(sample.source)
        out = collate(items, self.pad_id, self.encoder.gpu_decode, self.pad_multiple)
        out.update(keys=keys, sources=sources, epoch=self.epoch, batch=batch, worker=worker)
        return out


class _Loader(DataLoader):
    """Raises a worker's BridgeError here, as the one-line error it is."""

    def __iter__(self) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        for batch in super().__iter__():
            if "error" in batch:
                raise BridgeError(batch["error"])
            yield batch


def make_loader(dataset: ShardStream, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader that yields the dataset's micro-batches in order (batching is done inside)."""
    return _Loader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(0),  # not a draw from the training RNG (exact resume)
    )
