from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from dataprep.contract.sample import conversation_problem
from dataprep.fixtures import ai2d as fixture
from dataprep.sample import ImageBytes, ImageFile, Record, Reject, Sample
from dataprep.sources import registry
from dataprep.sources.ai2d import Ai2d

from helpers.records import by_id, read_records, reject_counts, samples_of

SUFFIX = "\nAnswer with the option's letter from the given choices directly."


@pytest.fixture()
def upstream(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "ai2d"
    return root, fixture.generate(root, seed=0)


def read_all(root: Path, **options) -> list[Record]:
    return read_records(Ai2d, root, **options)


def decode(image: ImageBytes) -> Image.Image:
    return Image.open(io.BytesIO(image.data)).convert("RGB")


def test_registered() -> None:
    assert registry()["ai2d"] is Ai2d
    assert Ai2d.licence == "non-commercial, no redistribution"


def test_counts_match_the_fixture(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    records = read_all(root)
    samples = samples_of(records)
    rejects = reject_counts(records)
    assert len(samples) == facts["adapter_samples"]
    assert rejects == facts["expected_rejects"]
    assert len(records) == facts["questions"]
    assert all(conversation_problem(sample) is None for sample in samples)
    assert len({record.id for record in records}) == len(records)


def test_plain_question(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    sample = by_id(read_all(root))["0.png-0"]
    assert isinstance(sample, Sample)
    assert [turn.role for turn in sample.conversations] == ["human", "gpt"]
    assert sample.conversations[0].value == (
        "<image>\nWhat is this a life cycle of?\nA. bee\nB. dragonfly\nC. wasp\nD. none of the above" + SUFFIX
    )
    assert sample.conversations[1].value == "B"
    assert sample.images == [ImageFile(root, "images/0.png")]
    assert sample.meta == {
        "questionId": "0.png-0",
        "imageName": "0.png",
        "abcLabel": False,
        "answerTexts": ["bee", "dragonfly", "wasp", "none of the above"],
        "correctAnswer": 1,
        "dropped_options": 0,
        "file": "questions/0.png.json",
        "split": "train",
    }


def test_empty_option_is_dropped_and_letters_follow(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    sample = by_id(read_all(root))["0.png-2"]
    assert sample.conversations[0].value.endswith("\nA. larva\nB. pupa\nC. adult" + SUFFIX)
    assert sample.conversations[1].value == "B"
    assert sample.meta["dropped_options"] == 1
    assert sample.meta["answerTexts"] == ["{}", "larva", "pupa", "adult"]


def test_duplicate_options_are_kept(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    sample = by_id(read_all(root))["1.png-0"]
    assert sample.conversations[0].value.endswith("\nA. grass\nB. grass\nC. fox\nD. sun" + SUFFIX)
    assert sample.conversations[1].value == "C"


def test_bad_answers_and_records(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    records = by_id(read_all(root))
    assert records["1.png-2"] == Reject("1.png-2", "bad_answer", records["1.png-2"].detail)
    assert records["1.png-3"].reason == "bad_answer"
    assert records["5.png-2"].reason == "bad_record"
    assert "correctAnswer" in records["5.png-2"].detail


def test_image_without_questions_yields_nothing(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    assert not [record for record in read_all(root) if record.id.startswith("2.png")]


def test_test_split_is_rejected_or_kept(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    test_prefix = facts["test_image"] + "-"
    excluded = [record for record in read_all(root) if record.id.startswith(test_prefix)]
    assert [(record.id, record.reason) for record in excluded] == [
        ("3.png-0", "test_split"),
        ("3.png-1", "test_split"),
    ]
    kept = by_id(read_all(root, exclude_test=False))
    assert isinstance(kept["3.png-0"], Sample)
    assert kept["3.png-0"].meta["split"] == "test"
    assert kept["3.png-0"].conversations[1].value == "A"


def test_only_test_reads_the_test_split_as_an_eval_set(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    records = read_all(root, only_test=True)
    samples = [record for record in records if isinstance(record, Sample)]
    assert [sample.id for sample in samples] == ["3.png-0", "3.png-1"]
    assert {sample.meta["split"] for sample in samples} == {"test"}
    others = [record for record in records if isinstance(record, Reject)]
    assert others and {record.reason for record in others} <= {"train_split", "bad_record", "bad_answer"}
    assert "train_split" in {record.reason for record in others}


def test_without_test_ids_nothing_is_excluded(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    (root / "ai2d_test_ids.csv").unlink()
    records = read_all(root)
    assert not [record for record in records if isinstance(record, Reject) and record.reason == "test_split"]
    assert "split" not in by_id(records)["0.png-0"].meta
    inputs = Ai2d(root, Ai2d.Options()).inputs()
    assert inputs == [root / "questions" / f"{n}.png.json" for n in range(6)] + [
        root / "annotations" / f"{n}.png.json" for n in range(6)
    ]


def test_inputs_and_missing(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    source = Ai2d(root, Ai2d.Options())
    assert source.missing() == []
    assert source.inputs()[-1] == root / "ai2d_test_ids.csv"
    assert root / "annotations" / "0.png.json" in source.inputs()
    (root / "abc_images").mkdir()
    assert not [path for path in source.inputs() if path.parent.name == "annotations"]
    empty = Ai2d(root / "elsewhere", Ai2d.Options())
    assert empty.missing() == [f"{root / 'elsewhere' / 'questions'}/*.json (no question files)"]
    assert empty.units() == []


def test_explicit_test_ids_file_must_exist(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    source = Ai2d(root, Ai2d.Options(test_ids="splits/test.csv"))
    assert source.missing() == [str(root / "splits" / "test.csv")]
    (root / "splits").mkdir()
    (root / "splits" / "test.csv").write_text("0.png\n5\n", encoding="utf-8")
    records = read_all(root, test_ids="splits/test.csv")
    split = sorted(
        record.id for record in records if isinstance(record, Reject) and record.reason == "test_split"
    )
    assert split == ["0.png-0", "0.png-1", "0.png-2", "5.png-0", "5.png-1", "5.png-2"]


def test_abc_question_is_rendered_with_letters(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    sample = by_id(read_all(root))["0.png-1"]
    assert sample.conversations[1].value == "A"
    assert sample.meta["abcLabel"] is True
    [image] = sample.images
    assert isinstance(image, ImageBytes)
    assert image.data.startswith(b"\x89PNG")
    rendered = decode(image)
    plain = Image.open(root / "images" / "0.png").convert("RGB")
    assert rendered.size == plain.size
    assert rendered.tobytes() != plain.tobytes()
    for box in facts["labels"]["0.png"]:
        (x1, y1), (x2, y2) = box["rectangle"]
        region = rendered.crop((x1, y1, x2 + 1, y2 + 1))
        original = plain.crop((x1, y1, x2 + 1, y2 + 1))
        colours = {colour for _, colour in region.getcolors(10_000)}
        assert (255, 255, 255) in colours
        assert any(max(colour) < 128 for colour in colours)  # the letter is drawn
        assert region.tobytes() != original.tobytes()
    outside = (0, 0, plain.width, 70)  # above the labels: untouched
    assert rendered.crop(outside).tobytes() == plain.crop(outside).tobytes()


def test_abc_render_is_shared_and_deterministic(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    first, second = by_id(read_all(root)), by_id(read_all(root))
    assert first["0.png-1"].images[0].data == second["0.png-1"].images[0].data
    assert first["1.png-1"].images[0].data != first["0.png-1"].images[0].data
    assert first["1.png-1"].conversations[1].value == "B"


def test_pre_rendered_abc_images_are_used(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    (root / "abc_images").mkdir()
    records = by_id(read_all(root))
    assert records["0.png-1"].images == [ImageFile(root, "abc_images/0.png")]
    assert records["0.png-0"].images == [ImageFile(root, "images/0.png")]
    # with pre-rendered letters the absent plain image no longer matters to the adapter
    assert records["4.png-1"].images == [ImageFile(root, "abc_images/4.png")]


def test_missing_plain_image_is_left_to_the_engine(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    records = by_id(read_all(root))
    assert records["4.png-0"].images == [ImageFile(root, f"images/{facts['missing_image']}")]
    assert records["4.png-1"].reason == "image_missing"


def test_unreadable_base_image(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    (root / "images" / "0.png").write_bytes(b"not a png")
    records = by_id(read_all(root))
    assert records["0.png-1"].reason == "image_unreadable"
    assert isinstance(records["0.png-0"], Sample)


def test_annotation_problems_are_rejects(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    (root / "annotations" / "0.png.json").unlink()
    (root / "annotations" / "1.png.json").write_text('{"text": {"T1": {"replacementText": "A"}}}')
    records = by_id(read_all(root))
    assert records["0.png-1"].reason == "annotation_missing"
    assert records["1.png-1"].reason == "bad_annotation"


@pytest.mark.timeout(30)  # before: reading the pipe waited for a writer forever
def test_an_annotation_that_is_a_named_pipe_is_a_reject_not_a_hang(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    path = root / "questions" / "0.png.json"
    path.write_text(path.read_text().replace('"0.png"', '"sub/0.png"'))  # its annotation: not an input
    (root / "images" / "sub").mkdir()
    (root / "images" / "0.png").rename(root / "images" / "sub" / "0.png")
    (root / "annotations" / "sub").mkdir()
    os.mkfifo(root / "annotations" / "sub" / "0.png.json")
    rejected = by_id(read_all(root))["0.png-1"]
    assert isinstance(rejected, Reject)
    assert (rejected.reason, rejected.detail) == (
        "bad_annotation",
        "annotations/sub/0.png.json is a named pipe, not a file",
    )


@pytest.mark.parametrize(
    "name",
    ["../../outside.png", "\ud800.png"],  # leaves the root; a lone surrogate (the engine: bad_text)
)
def test_an_image_name_that_cannot_be_opened_safely_is_a_reject_not_a_crash(
    upstream: tuple[Path, dict], name: str
) -> None:
    root, _ = upstream
    path = root / "questions" / "0.png.json"
    data = json.loads(path.read_text())
    data["imageName"] = name
    path.write_text(json.dumps(data))
    records = by_id(read_all(root))
    assert records["0.png-1"].reason == "unsafe_path"
    assert records["0.png-0"].images == [ImageFile(root, f"images/{name}")]  # the engine refuses it


def test_units_are_chunks_of_question_files(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    source = Ai2d(root, Ai2d.Options(files_per_unit=4))
    assert source.units() == ["questions[0:4]", "questions[4:6]"]
    assert [record.id for record in read_all(root, files_per_unit=4)] == [
        record.id for record in read_all(root)
    ]
    with pytest.raises(ValueError, match="unknown unit"):
        list(source.read("everything"))


def test_unreadable_question_file_raises(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    (root / "questions" / "1.png.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"questions/1\.png\.json"):
        read_all(root)


def test_prompt_suffix_option(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    sample = by_id(read_all(root, prompt={"suffix": "\nAnswer with a letter."}))["0.png-0"]
    assert sample.conversations[0].value.endswith("D. none of the above\nAnswer with a letter.")
    with pytest.raises(ValidationError):
        Ai2d.Options(prompt={"suffx": "x"})


@pytest.mark.parametrize(
    "rectangle",
    [
        "[[NaN, 0], [10, 10]]",
        "[[0, 0], [10, Infinity]]",
        "[[0, 0], [10, 1e7]]",
        "[[0, 0], [10, -50000]]",
        "[[0, 0], [10, 1" + "0" * 400 + "]]",
        "[[true, 0], [10, 10]]",
        '[["0", "0"], ["10", "10"]]',
    ],
    ids=["nan", "infinity", "too-tall", "far-negative", "beyond-float", "boolean", "strings"],
)
def test_an_unusable_text_box_rejects_the_letter_question_only(
    upstream: tuple[Path, dict], rectangle: str
) -> None:
    root, _ = upstream
    annotation = '{"text": {"T1": {"rectangle": RECTANGLE, "replacementText": "A"}}}'
    (root / "annotations" / "1.png.json").write_text(annotation.replace("RECTANGLE", rectangle))
    records = by_id(read_all(root))
    rejected = records["1.png-1"]
    assert isinstance(rejected, Reject)
    assert rejected.reason == "bad_annotation"
    assert rejected.detail.startswith("annotations/1.png.json: ")
    assert isinstance(records["1.png-0"], Sample)


def test_a_text_box_slightly_past_the_edge_is_drawn(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    width, height = Image.open(root / "images" / "1.png").size
    box = [[-2, height - 10], [width + 2, height + 2]]
    annotation = {"text": {"T1": {"rectangle": box, "replacementText": "A"}}}
    (root / "annotations" / "1.png.json").write_text(json.dumps(annotation))
    rendered = decode(by_id(read_all(root))["1.png-1"].images[0])
    assert rendered.getpixel((0, height - 5)) == (255, 255, 255)


def test_v1_2_scale_question_files_make_at_least_64_units(tmp_path: Path) -> None:
    (tmp_path / "questions").mkdir()
    for index in range(4903):  # the question files of ai2d-all.zip
        (tmp_path / "questions" / f"{index}.png.json").write_text('{"questions": {}}')
    units = Ai2d(tmp_path, Ai2d.Options()).units()
    assert len(units) == 99
    assert units[0] == "questions[0:50]" and units[-1] == "questions[4900:4903]"
