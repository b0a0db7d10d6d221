from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from dataprep.contract.sample import Turn, conversation_problem
from dataprep.fixtures import llava_zh as fixture
from dataprep.sample import ImageFile, Reject
from dataprep.sources import registry
from dataprep.sources.llava_zh import LlavaZh

from helpers.llava_records import engine_rejects
from helpers.records import by_id, read_records, reject_counts, samples_of

ANNOTATION = "llava_instruct_150k_zh.json"


@pytest.fixture()
def upstream(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "llava_zh"
    return root, fixture.generate(root, seed=0)


def test_counts(upstream) -> None:
    root, facts = upstream
    records = read_records(LlavaZh, root, **facts["options"])
    samples = samples_of(records)
    assert len(samples) == facts["adapter_samples"]
    assert reject_counts(records) == Counter(facts["expected_rejects"])
    assert all(conversation_problem(sample) is None for sample in samples)
    rejected = engine_rejects(LlavaZh(root, LlavaZh.Options(**facts["options"])), samples)
    assert rejected == Counter(facts["engine_rejects"])
    assert len(samples) - rejected.total() == facts["expected_samples"]
    assert registry()["llava_zh"] is LlavaZh
    assert LlavaZh.licence == "none stated"


def test_chinese_multi_turn_kept_byte_exact(upstream) -> None:
    root, _ = upstream
    sample = by_id(read_records(LlavaZh, root))["000000033471"]
    assert sample.conversations == [
        Turn("human", "<image>\n图片中的公共汽车是什么颜色的？"),
        Turn("gpt", "图片中的公共汽车是白色和红色的。"),
        Turn("human", "公共汽车的背面有什么特征？"),
        Turn("gpt", "公共汽车的背面有一个广告。"),
        Turn("human", "公共汽车是在城市街道上行驶吗？"),
        Turn("gpt", "是的，公共汽车正在一条繁忙的城市街道上行驶。"),
    ]
    assert sample.meta == {"file": ANNOTATION, "index": 0, "image": "000000033471.jpg"}
    raw = (root / ANNOTATION).read_bytes()
    answer = by_id(read_records(LlavaZh, root))["000000334872"].conversations[1].value
    assert answer == "照片中，两个人在公园里放风筝……\n\n他们看起来很开心，天空很晴朗。  "
    assert json.dumps(answer, ensure_ascii=False).encode("utf-8") in raw
    mixed = by_id(read_records(LlavaZh, root))["000000319154"]
    assert mixed.conversations[1].value.encode("utf-8") == "小狗正在草地上追一个飞盘（Frisbee）。".encode()


def test_bare_and_prefixed_names_resolve_under_train2017(upstream) -> None:
    root, _ = upstream
    records = by_id(read_records(LlavaZh, root))
    assert records["000000033471"].images == [ImageFile(root / "coco", "train2017/000000033471.jpg")]
    assert records["000000052846"].images == [ImageFile(root / "coco", "train2017/000000052846.jpg")]
    assert records["000000052846"].meta["image"] == "train2017/000000052846.jpg"
    absent = [
        s.id
        for s in samples_of(list(records.values()))
        if not (root / "coco" / s.images[0].relpath).is_file()
    ]
    assert absent == ["000000099999"]


def test_placeholder_after_question_moves_to_the_front(upstream) -> None:
    root, _ = upstream
    sample = by_id(read_records(LlavaZh, root))["000000052846"]
    assert sample.conversations == [
        Turn("human", "<image>\n这只猫在做什么？"),
        Turn("gpt", "这只猫正躺在笔记本电脑的键盘上。"),
    ]
    kept = by_id(read_records(LlavaZh, root, image_placement="keep"))["000000052846"]
    assert kept.conversations[0].value == "这只猫在做什么？\n<image>"


def test_missing_image_and_bad_conversation(upstream) -> None:
    root, facts = upstream
    records = by_id(read_records(LlavaZh, root))
    assert records["000000099999"].images == [ImageFile(root / "coco", facts["missing_image"])]
    assert not (root / "coco" / facts["missing_image"]).exists()
    assert records["000000515289"] == Reject(
        "000000515289",
        "bad_conversation",
        f"file {ANNOTATION}, index 5: the conversation ends with a human turn",
    )


def test_image_root_option(upstream, tmp_path: Path) -> None:
    root, _ = upstream
    assert LlavaZh(root, LlavaZh.Options()).roots() == [root / "coco"]
    (tmp_path / "data").mkdir()
    (root / "coco").rename(tmp_path / "data" / "coco")
    source = LlavaZh(root, LlavaZh.Options(image_root="../data/coco"))
    assert source.roots() == [root / "../data/coco"]
    sample = by_id(read_records(LlavaZh, root, image_root=str(tmp_path / "data/coco")))["000000033471"]
    assert sample.images == [ImageFile(tmp_path / "data/coco", "train2017/000000033471.jpg")]
    assert (sample.images[0].root / sample.images[0].relpath).is_file()


def test_escaped_unicode_and_converted_jsonl_read_the_same(upstream) -> None:
    root, _ = upstream
    expected = read_records(LlavaZh, root)
    records = json.loads((root / ANNOTATION).read_text(encoding="utf-8"))
    (root / ANNOTATION).write_text(json.dumps(records), encoding="ascii")
    assert read_records(LlavaZh, root) == expected
    converted = root / "llava_instruct_150k_zh.jsonl"
    converted.write_text(
        "\n".join(json.dumps(record, ensure_ascii=False) for record in records), encoding="utf-8"
    )
    from_jsonl = read_records(LlavaZh, root, file=converted.name)
    assert [r.conversations for r in samples_of(from_jsonl)] == [
        r.conversations for r in samples_of(expected)
    ]
    assert samples_of(from_jsonl)[1].meta == {
        "file": converted.name,
        "line": 2,
        "image": "train2017/000000052846.jpg",
    }


def test_options() -> None:
    assert LlavaZh.Options().file == ANNOTATION
    assert LlavaZh.Options().image_root == "coco"
    for bad in ({"file": "llava.txt"}, {"subset": "x"}):
        with pytest.raises(ValidationError):
            LlavaZh.Options(**bad)
