from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dataprep.fixtures import chartqa as fixture
from dataprep.sample import ImageBytes, ImageFile
from dataprep.sources import registry
from dataprep.sources.chartqa import ChartQA

from helpers.vqa_groups import expected_pairs, pairs, read_all

HUMAN = "ChartQA Dataset/train/train_human.json"
AUGMENTED = "ChartQA Dataset/train/train_augmented.json"


@pytest.fixture()
def upstream(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "chartqa"
    return root, fixture.generate(root, seed=0)


def source(root: Path, **options) -> ChartQA:
    return ChartQA(root=root, options=ChartQA.Options(**options))


def test_registered() -> None:
    assert registry()["chartqa"] is ChartQA
    assert ChartQA.licence == "GPL-3.0"


def test_published_file_formats(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    assert "\n" not in (root / HUMAN).read_text().strip()
    assert '\n\t{\n\t\t"imgname"' in (root / AUGMENTED).read_text()
    assert (root / "ChartQA Dataset/train/tables/10095.csv").exists()
    assert (root / "ChartQA Dataset/train/annotations/10095.json").exists()


def test_one_conversation_per_chart_human_first(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    read = read_all(source(root))
    assert len(read.samples) == facts["adapter_samples"] == 6
    assert set(read.samples) == set(facts["conversations"])
    assert read.reasons == facts["expected_rejects"]
    for chart, conversation in facts["conversations"].items():
        queries, labels, kinds = zip(*conversation, strict=True)
        sample = read.samples[chart]
        assert pairs(sample) == expected_pairs(list(queries), list(labels))
        assert sample.meta["kinds"] == list(kinds)
        assert sample.meta["split"] == "train"
        assert sample.images == [ImageFile(root, f"ChartQA Dataset/train/png/{chart}")]
    both = read.samples["10095.png"]
    assert both.meta["kinds"] == ["human", "human", "augmented"]
    assert both.meta["file"] == [HUMAN, AUGMENTED]
    assert pairs(both)[0][0] == (
        "<image>\nIs the value of Favorable 38 in 2015?\nAnswer the question using a single word or phrase."
    )
    assert pairs(both)[1] == (
        "What is the difference between the two lines in 2017?\nAnswer the question using a single word or phrase.",
        "12",
    )
    assert pairs(both)[2][1] == "57"


def test_augmented_only_chart_and_bad_record(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    read = read_all(source(root))
    only = read.samples[facts["augmented_only"]]
    assert only.meta["kinds"] == ["augmented"]
    assert only.meta["file"] == [AUGMENTED]
    assert pairs(only)[0][1] == "16"
    [reject] = read.rejects
    assert (reject.id, reject.reason) == (f"{AUGMENTED}#4", "bad_record")


def test_quirky_labels_stay_byte_identical(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    train = read_all(source(root)).samples
    assert pairs(train["10305.png"])[0][1] == "[63, 26]"
    assert [answer for _, answer in pairs(train["multi_col_20.png"])] == ["0.39", "44362"]
    assert pairs(train["two_col_5.png"])[0][1] == "1.634722222"
    test = read_all(source(root, split="test")).samples
    assert len(test) == facts["splits"]["test"]["expected_samples"] == 2
    assert [answer for _, answer in pairs(test["30001.png"])] == ["[63, 26]", "1.634722222"]
    assert [answer for _, answer in pairs(test["two_col_3.png"])] == ["0.39", "44362"]
    assert test["30001.png"].meta["kinds"] == ["human", "augmented"]


def test_missing_chart_image_left_to_the_engine(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    samples = read_all(source(root)).samples
    missing = facts["missing_image"]
    assert not (root / "ChartQA Dataset/train/png" / missing).exists()
    assert samples[missing].images == [ImageFile(root, f"ChartQA Dataset/train/png/{missing}")]
    present = [chart for chart in samples if (root / "ChartQA Dataset/train/png" / chart).exists()]
    assert len(present) == facts["expected_samples"]


def test_val_with_an_empty_human_file(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    assert (root / "ChartQA Dataset/val/val_human.json").read_text() == "[]"
    read = read_all(source(root, split="val"))
    assert list(read.samples) == ["20001.png"]
    assert read.samples["20001.png"].meta["file"] == ["ChartQA Dataset/val/val_augmented.json"]
    assert read.rejects == []


def test_root_may_be_the_dataset_folder_itself(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    outer = read_all(source(root)).samples
    inner_root = root / "ChartQA Dataset"
    inner_source = source(inner_root)
    assert inner_source.inputs() == [
        inner_root / "train/train_human.json",
        inner_root / "train/train_augmented.json",
    ]
    inner = read_all(inner_source).samples
    assert {k: v.conversations for k, v in inner.items()} == {k: v.conversations for k, v in outer.items()}
    assert inner["10095.png"].images == [ImageFile(inner_root, "train/png/10095.png")]
    assert inner["10095.png"].meta["file"] == ["train/train_human.json", "train/train_augmented.json"]


def test_partitions_and_missing_inputs(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    assert set(read_all(source(root, partitions=1)).samples) == set(facts["conversations"])
    (root / AUGMENTED).unlink()
    assert source(root).missing() == [str(root / AUGMENTED)]
    with pytest.raises(FileNotFoundError):
        list(source(root).read(source(root).units()[0]))


def test_options_are_checked() -> None:
    with pytest.raises(ValidationError):
        ChartQA.Options(split="dev")
    with pytest.raises(ValidationError):
        ChartQA.Options(prompt={"suffix": "", "prefix": "Q: "})


def test_parquet_export(tmp_path: Path) -> None:
    root = tmp_path / "chartqa_parquet"
    facts = fixture.generate_parquet(root, seed=0)
    chartqa = source(root, format="parquet", partitions=2)
    first, second = "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"
    assert chartqa.inputs() == [root / first, root / second]
    read = read_all(chartqa)
    assert len(read.samples) == facts["expected_samples"]
    assert read.reasons == facts["expected_rejects"]
    missing = next(reject for reject in read.rejects if reject.reason == "image_missing")
    assert missing.id == "two_col_404.png"
    for chart, sample in read.samples.items():
        queries, labels, kinds = zip(*facts["conversations"][chart], strict=True)
        assert pairs(sample) == expected_pairs(list(queries), list(labels))
        assert sample.meta["kinds"] == list(kinds)
        assert sample.images == [ImageBytes(facts["images"][chart], name=chart)]
    assert read.samples["10095.png"].meta["file"] == [first, second]
    assert read.samples["10095.png"].meta["kinds"] == ["human", "human", "augmented"]
    test = read_all(source(root, format="parquet", split="test")).samples
    assert pairs(test["30001.png"])[0][1] == "[63, 26]"
    assert test["30001.png"].images == [ImageBytes(facts["images"]["30001.png"], name="30001.png")]
    assert source(root, format="parquet", split="val").missing() == [f"{root}/data/val-*.parquet"]


def test_a_parquet_file_of_another_layout_is_named_with_its_missing_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "chartqa_parquet"
    (root / "data").mkdir(parents=True)
    table = pa.table({"imgname": ["a.png"], "query": ["Q?"], "label": ["1"], "image": [b"x"]})
    pq.write_table(table, root / "data/train-00000-of-00001.parquet")
    chartqa = source(root, format="parquet")
    with pytest.raises(ValueError, match=r"train-00000-of-00001.parquet: no column type \(has imgname"):
        read_all(chartqa)


def test_a_parquet_file_cut_short_is_named(tmp_path: Path) -> None:
    root = tmp_path / "chartqa_parquet"
    (root / "data").mkdir(parents=True)
    (root / "data/train-00000-of-00001.parquet").write_bytes(b"PAR1 cut short")
    with pytest.raises(ValueError, match=r"train-00000-of-00001.parquet: not a readable parquet file"):
        read_all(source(root, format="parquet"))
