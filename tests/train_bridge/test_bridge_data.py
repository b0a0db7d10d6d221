"""The loader: disjoint, complete, deterministic and resumable across ranks × workers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dataprep.contract.manifest import load_manifest
from dataprep.contract.shards import iter_samples, iter_tar, tar_locations, write_shard_index
from dataprep.files import canonical_json, sha256_file
from train_bridge.data import Encoder, ShardStream, collate, epoch_order, make_loader


def stream(manifest_path: Path, tokenizer, **kwargs) -> ShardStream:
    encoder = Encoder(tokenizer, image_size=28, num_image_tokens=1, max_length=512, system="s")
    return ShardStream(manifest_path, encoder, pad_id=tokenizer.pad_token_id, **kwargs)


def all_keys(manifest_path: Path) -> set[str]:
    manifest = load_manifest(manifest_path)
    return {key for path in manifest.shard_paths(manifest_path) for key, _, _ in iter_samples(path)}


def test_ranks_times_workers_cover_the_epoch_disjointly(manifest_path: Path, tokenizer) -> None:
    seen: dict[tuple[int, int], list[str]] = {}
    for rank in range(2):
        dataset = stream(
            manifest_path, tokenizer, batch_size=2, rank=rank, world_size=2, drop_last=False, window=2
        )
        batches = list(make_loader(dataset, num_workers=2))
        assert [b["batch"] for b in batches] == list(range(dataset.batches_per_epoch()))
        for batch in batches:
            seen.setdefault((rank, batch["worker"]), []).extend(batch["keys"])
    assert len(seen) == 4 and all(seen.values())
    flat = [key for keys in seen.values() for key in keys]
    assert len(flat) == len(set(flat))
    assert set(flat) == all_keys(manifest_path)


def test_order_depends_on_seed_and_epoch_only() -> None:
    counts = [5, 5, 5, 3]
    a = epoch_order(counts, seed=1, epoch=0, window=2)
    assert sorted(a.tolist()) == list(range(18))
    assert (a == epoch_order(counts, seed=1, epoch=0, window=2)).all()
    assert (a != epoch_order(counts, seed=1, epoch=1, window=2)).any()
    assert (a != epoch_order(counts, seed=2, epoch=0, window=2)).any()
    # a window of 2 shards keeps reads within them: the first 10 ids come from two shards
    assert len({i // 5 for i in a[:10].tolist()}) == 2


@pytest.mark.parametrize("workers_after", [0, 1, 3])
def test_resume_position_skips_exactly_the_consumed_batches(
    manifest_path: Path, tokenizer, workers_after: int
) -> None:
    dataset = stream(manifest_path, tokenizer, batch_size=3)
    dataset.set_position(epoch=1, start=0)
    full = [b["keys"] for b in make_loader(dataset, num_workers=2)]
    dataset.set_position(epoch=1, start=3)
    tail = list(make_loader(dataset, num_workers=workers_after))
    assert [b["keys"] for b in tail] == full[3:]
    assert tail[0]["batch"] == 3 and tail[0]["epoch"] == 1


def test_batches_hold_padded_ids_labels_and_images(manifest_path: Path, tokenizer) -> None:
    dataset = stream(manifest_path, tokenizer, batch_size=4)
    batch = next(iter(make_loader(dataset, num_workers=0)))
    n_images = int((batch["input_ids"] == tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")).sum())
    assert tuple(batch["images"].shape) == (n_images, 3, 28, 28)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    padding = batch["attention_mask"] == 0
    assert (batch["labels"][padding] == -100).all()
    assert batch["images"].dtype == torch.uint8 and batch["images"].float().std() > 10  # normalized on device


def test_batches_pad_to_a_multiple_without_new_targets(manifest_path: Path, tokenizer) -> None:
    plain = next(iter(make_loader(stream(manifest_path, tokenizer, batch_size=4), num_workers=0)))
    padded = next(
        iter(make_loader(stream(manifest_path, tokenizer, batch_size=4, pad_multiple=64), num_workers=0))
    )
    length = plain["input_ids"].shape[1]
    assert length % 64  # otherwise this batch would not show the padding
    assert padded["input_ids"].shape[1] % 64 == 0 and length <= padded["input_ids"].shape[1] < length + 64
    for key in ("input_ids", "labels", "attention_mask"):
        assert (padded[key][:, :length] == plain[key]).all()
    assert (padded["attention_mask"][:, length:] == 0).all() and (padded["labels"][:, length:] == -100).all()


def test_length_groups_sort_each_run_of_a_window_longest_first() -> None:
    counts = [4, 4, 4, 4, 4]  # windows of 2 shards: 8, 8 and 4 samples, runs of 4 inside them
    lengths = np.random.default_rng(0).permutation(20) * 10
    plain = epoch_order(counts, seed=1, epoch=0, window=2)
    grouped = epoch_order(counts, seed=1, epoch=0, window=2, lengths=lengths, length_group=4)
    assert sorted(grouped.tolist()) == list(range(20))
    for begin in range(0, 20, 4):
        run = grouped[begin : begin + 4]
        assert sorted(run.tolist()) == sorted(plain[begin : begin + 4].tolist())
        assert list(lengths[run]) == sorted(lengths[run], reverse=True)
    assert (grouped != plain).any()


def test_length_grouping_cuts_padding(manifest_path: Path, tokenizer) -> None:
    def pad_fraction(length_group: int) -> float:
        encoder = Encoder(tokenizer, image_size=28, num_image_tokens=64, max_length=512, system="s")
        dataset = ShardStream(manifest_path, encoder, batch_size=2, length_group=length_group, window=8)
        batches = list(make_loader(dataset, num_workers=0))
        total = sum(b["attention_mask"].numel() for b in batches)
        return 1 - sum(int(b["attention_mask"].sum()) for b in batches) / total

    plain, grouped = pad_fraction(0), pad_fraction(22)
    assert grouped < 0.5 * plain, (grouped, plain)


def test_a_missing_or_cut_shard_stops_the_stream_before_it_starts(tmp_path: Path, tokenizer) -> None:
    from helpers.bridge_shards import build_shards

    manifest_path = build_shards(tmp_path / "mix")
    shards = load_manifest(manifest_path).shard_paths(manifest_path)
    shards[1].write_bytes(shards[1].read_bytes()[:-1024])
    shards[3].unlink()
    with pytest.raises(ValueError, match="2 shard") as caught:
        stream(manifest_path, tokenizer, batch_size=2)
    assert f"{shards[3]}: missing" in str(caught.value) and f"{shards[1]}: " in str(caught.value)


def test_a_micro_batch_whose_samples_were_all_dropped_holds_no_real_token() -> None:
    batch = collate([{"dropped": "too long"}, {"dropped": "too long"}], pad_id=0, gpu_decode=False)
    assert batch["attention_mask"].sum() == 0 and (batch["labels"] == -100).all() and batch["dropped"] == 2


def test_an_image_damaged_after_the_build_stops_training_naming_its_shard(tmp_path: Path, tokenizer) -> None:
    from dataprep.contract.shards import member_locations
    from train_bridge.errors import BridgeError

    from helpers.bridge_shards import build_shards

    manifest_path = build_shards(tmp_path / "mix")
    shard = load_manifest(manifest_path).shard_paths(manifest_path)[0]
    image = next(location for location in member_locations(shard) if not location.name.endswith(".json"))
    data = bytearray(shard.read_bytes())
    data[image.offset : image.offset + image.size] = (
        b"\0" * image.size
    )  # same size: the start-up check passes
    shard.write_bytes(bytes(data))
    dataset = stream(manifest_path, tokenizer, batch_size=2)
    for workers in (0, 2):  # a worker's error too arrives as itself, one line, not a traceback
        with pytest.raises(BridgeError, match=f"^{shard}, sample \\d+ cannot be read[^\n]*$"):
            list(make_loader(dataset, num_workers=workers))


def test_images_are_never_fed_to_another_samples_placeholder(tmp_path: Path, tokenizer) -> None:
    from train_bridge.errors import BridgeError

    from helpers.bridge_shards import build_shards, rewrite_shard

    manifest_path = build_shards(tmp_path / "mix", samples=4, per_shard=4)
    members = []
    for name, data in iter_tar(load_manifest(manifest_path).shard_paths(manifest_path)[0]):
        if name.endswith(".json"):  # sample 0 (one image) loses its <image>, text-only sample 2 gains one
            record = json.loads(data)
            first = record["conversations"][0]
            first["value"] = first["value"].replace("<image>\n", "") if record["images"] else "<image>\n"
            data = canonical_json(record) if name.startswith(("s000000", "s000002")) else data
        members.append((name, data))
    shard = rewrite_shard(manifest_path, 0, members)
    dataset = stream(manifest_path, tokenizer, batch_size=4)  # one batch: the counts would add up
    with pytest.raises(BridgeError, match=f"{shard}, sample [02] cannot be read .*<image> placeholders for"):
        list(make_loader(dataset, num_workers=0))


def test_a_sample_of_a_source_the_manifest_does_not_list_stops_the_run(tmp_path: Path, tokenizer) -> None:
    from train_bridge.errors import BridgeError

    from helpers.bridge_shards import build_shards, rewrite_shard

    manifest_path = build_shards(tmp_path / "mix", samples=4, per_shard=4)
    members = []
    for name, data in iter_tar(load_manifest(manifest_path).shard_paths(manifest_path)[0]):
        if name.startswith("s000001") and name.endswith(".json"):
            data = canonical_json({**json.loads(data), "source": "elsewhere"})
        members.append((name, data))
    shard = rewrite_shard(manifest_path, 0, members)
    dataset = stream(manifest_path, tokenizer, batch_size=4)
    with pytest.raises(
        BridgeError, match=f"{shard}, sample 1 cannot be read .*'elsewhere' is none of the manifest's"
    ):
        list(make_loader(dataset, num_workers=0))


def test_a_member_that_is_not_one_of_the_samples_images_stops_the_run(tmp_path: Path, tokenizer) -> None:
    from train_bridge.errors import BridgeError

    from helpers.bridge_shards import build_shards, rewrite_shard

    manifest_path = build_shards(tmp_path / "mix", samples=4, per_shard=4)
    members = []
    for name, data in iter_tar(load_manifest(manifest_path).shard_paths(manifest_path)[0]):
        members.append((name, data))
        if name == "s000001.json":  # an extra member the json does not name
            members.append(("s000001.zz.png", b"not listed"))
    shard = rewrite_shard(manifest_path, 0, members)
    dataset = stream(manifest_path, tokenizer, batch_size=4)
    with pytest.raises(BridgeError, match=f"{shard}, sample 1 cannot be read .*are not its images"):
        list(make_loader(dataset, num_workers=0))


def test_a_sidecar_index_other_than_the_manifests_stops_the_run_at_start(tmp_path: Path, tokenizer) -> None:
    from train_bridge.errors import BridgeError

    from helpers.bridge_shards import build_shards

    manifest_path = build_shards(tmp_path / "mix", samples=4, per_shard=4)
    manifest = json.loads(manifest_path.read_text())
    shard = load_manifest(manifest_path).shard_paths(manifest_path)[0]
    locations = tar_locations(shard)
    sidecar = write_shard_index(shard, locations)
    manifest["shards"][0].update(index="shards/mix-000000.idx.json", index_sha256=sha256_file(sidecar))
    manifest_path.write_text(json.dumps(manifest))
    assert len(list(make_loader(stream(manifest_path, tokenizer, batch_size=4), num_workers=0))) == 1
    images = [i for i, location in enumerate(locations) if not location.name.endswith(".json")]
    locations[images[0]] = replace(locations[images[1]], name=locations[images[0]].name)  # another's bytes
    write_shard_index(shard, locations)  # the same size: only its sha256 tells
    with pytest.raises(BridgeError, match=f"{sidecar}: sha256 differs from the manifest"):
        stream(manifest_path, tokenizer, batch_size=4)


@pytest.mark.parametrize("samples", [3, 5])
def test_a_shard_that_does_not_hold_the_manifests_samples_stops_the_run_at_start(
    tmp_path: Path, tokenizer, samples: int
) -> None:
    from train_bridge.errors import BridgeError

    from helpers.bridge_shards import build_shards

    manifest_path = build_shards(tmp_path / "mix", samples=8, per_shard=4)
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"][0]["samples"] = samples  # fewer: the rest were skipped; more: a crash mid-run
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BridgeError, match=f"mix-000000.tar: 4 sample jsons, manifest says {samples}"):
        stream(manifest_path, tokenizer, batch_size=2, length_group=0)
