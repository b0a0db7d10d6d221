"""Recipe validation: every error names the file, the line and the field; nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dataprep.recipe.load import RecipeError, load_recipe, recipe_from_data

VALID = """\
name: demo
seed: 3
output:
  dir: out
  shard_size: 10
sources:
  - source: conversations
    path: {path}
    file: a.jsonl
"""


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def _load(tmp_path: Path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path, load_recipe(path)


def _error(tmp_path: Path, text: str) -> RecipeError:
    with pytest.raises(RecipeError) as caught:
        _load(tmp_path, text)
    return caught.value


def test_valid_recipe_loads(tmp_path, source_dir):
    _, recipe = _load(tmp_path, VALID.format(path=source_dir))
    assert recipe.sources[0].options == {"file": "a.jsonl"}
    assert recipe.output.shard_size == 10
    assert recipe.source_root(recipe.sources[0]) == source_dir


def test_unknown_source_names_field_and_line(tmp_path, source_dir):
    error = _error(tmp_path, VALID.format(path=source_dir).replace("source: conversations", "source: nope"))
    (problem,) = error.problems
    assert problem.field == "sources.0.source"
    assert problem.line == 7
    assert "nope" in problem.message and "conversations" in problem.message
    assert str(tmp_path / "recipe.yaml") + ":7: sources.0.source" in str(error)


def test_wrong_type_names_field(tmp_path, source_dir):
    error = _error(tmp_path, VALID.format(path=source_dir).replace("shard_size: 10", "shard_size: many"))
    assert [(p.field, p.line) for p in error.problems] == [("output.shard_size", 5)]


def test_missing_path_names_field(tmp_path):
    error = _error(tmp_path, VALID.format(path=tmp_path / "absent"))
    assert [(p.field, p.line) for p in error.problems] == [("sources.0.path", 8)]
    assert "does not exist" in error.problems[0].message


def test_unknown_top_level_key(tmp_path, source_dir):
    error = _error(tmp_path, VALID.format(path=source_dir) + "colour: blue\n")
    assert [(p.field, p.line) for p in error.problems] == [("colour", 10)]


def test_unknown_adapter_option(tmp_path, source_dir):
    error = _error(tmp_path, VALID.format(path=source_dir) + "    flavour: sweet\n")
    assert [(p.field, p.line) for p in error.problems] == [("sources.0.flavour", 10)]


@pytest.mark.parametrize(
    ("old", "new", "field", "guess"),
    [
        ("source: conversations", "source: conversation", "sources.0.source", "'conversations'"),
        ("seed: 3", "sede: 3", "sede", "'seed'"),
        ("shard_size: 10", "shard_sise: 10", "output.shard_sise", "'shard_size'"),
        ("file: a.jsonl", "fiel: a.jsonl", "sources.0.fiel", "'file'"),
        ("file: a.jsonl", "file: a.jsonl\n    repaet: 2", "sources.0.repaet", "'repeat'"),
    ],
)
def test_a_misspelt_key_or_source_says_what_it_may_mean(tmp_path, source_dir, old, new, field, guess):
    error = _error(tmp_path, VALID.format(path=source_dir).replace(old, new))
    [message] = [problem.message for problem in error.problems if problem.field == field]
    assert message.endswith(f"(did you mean {guess}?)") or f"(did you mean {guess}?) (known:" in message


def test_a_key_like_nothing_known_gets_no_guess(tmp_path, source_dir):
    error = _error(tmp_path, VALID.format(path=source_dir).replace("seed: 3", "seed: 3\nzzzz: 1"))
    [problem] = error.problems
    assert problem.field == "zzzz" and "did you mean" not in problem.message


def test_missing_required_key(tmp_path, source_dir):
    error = _error(tmp_path, VALID.format(path=source_dir).replace("name: demo\n", ""))
    assert [p.field for p in error.problems] == ["name"]


def test_bad_take_fraction_and_duplicate_names(tmp_path, source_dir):
    error = _error(tmp_path, VALID.format(path=source_dir) + "    take: 1.5\n")
    assert [p.field for p in error.problems] == ["sources.0.take"]
    doubled = (
        VALID.format(path=source_dir)
        + f"  - source: conversations\n    path: {source_dir}\n    file: a.jsonl\n"
    )
    error = _error(tmp_path, doubled)
    assert [(p.field, p.line) for p in error.problems] == [("sources.1.source", 10)]
    assert "sources 0 and sources 1 are both named 'conversations'" in str(error)


def test_eval_sets_are_checked_like_sources(tmp_path, source_dir):
    evals = (
        "decontaminate:\n  mode: drop\n  eval_sets:\n"
        f"    - {{source: conversations, path: {source_dir}, file: b.jsonl}}\n"
        f"    - {{source: nope, name: other, path: {source_dir}}}\n"
        f"    - {{source: vlmevalkit_tsv, name: mmb, path: {source_dir}, file: x.tsv, rows: 3}}\n"
    )
    error = _error(tmp_path, VALID.format(path=source_dir) + evals)
    fields = [(p.field, p.line) for p in error.problems]
    assert fields == [
        ("decontaminate.eval_sets.0.source", 13),
        ("decontaminate.eval_sets.1.source", 14),
        ("decontaminate.eval_sets.2.rows", 15),
    ]
    assert "sources 0 and decontaminate eval_sets 0 are both named 'conversations'" in str(error)
    error = _error(tmp_path, VALID.format(path=source_dir) + "decontaminate: {mode: erase, eval_sets: []}\n")
    assert {p.field for p in error.problems} == {"decontaminate.mode", "decontaminate.eval_sets"}


def test_without_decontaminate_the_recipe_hash_is_what_it_was(tmp_path, source_dir):
    _, recipe = _load(tmp_path, VALID.format(path=source_dir))
    assert "decontaminate" not in recipe.content()
    evals = f"decontaminate:\n  eval_sets: [{{source: conversations, name: e, path: {source_dir}, file: b.jsonl}}]\n"
    _, checked = _load(tmp_path, VALID.format(path=source_dir) + evals)
    assert checked.content()["decontaminate"]["mode"] == "report"
    assert checked.sha256() != recipe.sha256()


def test_a_recipe_that_is_not_utf8_is_a_recipe_error(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(RecipeError, match="not UTF-8 text"):
        load_recipe(path)


def test_recorded_recipes_are_checked_without_line_numbers_and_overrides_need_mappings(tmp_path, source_dir):
    recorded = yaml.safe_load(VALID.format(path=source_dir)) | {"output": "out"}
    with pytest.raises(RecipeError) as caught:
        recipe_from_data(recorded, Path("m.json (its recipe)"), {"output.dir": "elsewhere"})
    assert str(caught.value).splitlines()[1] == "m.json (its recipe): output: is not a mapping"
    missing = yaml.safe_load(VALID.format(path=tmp_path / "nowhere"))
    with pytest.raises(RecipeError) as caught:
        recipe_from_data(missing, Path("m.json (its recipe)"))
    assert str(caught.value).splitlines()[1].startswith("m.json (its recipe): sources.0.path: ")
    tiny = yaml.safe_load(VALID.format(path=source_dir))
    tiny["sources"][0]["take"] = 0.00005  # JSON writes 5e-05, which YAML 1.1 reads as a string
    assert recipe_from_data(json.loads(json.dumps(tiny)), Path("m.json")).sources[0].take == 0.00005


@pytest.mark.parametrize("take", ["true", "yes", "'5'", "-3", "1.5", "0.0", "lots"])
def test_take_is_all_a_count_or_a_fraction_and_nothing_that_looks_like_one(tmp_path, source_dir, take):
    error = _error(tmp_path, VALID.format(path=source_dir) + f"    take: {take}\n")
    (problem,) = error.problems
    assert (problem.field, problem.line) == ("sources.0.take", 10)
    assert "a count ≥ 0 or a fraction in (0, 1]" in problem.message


def test_numbers_are_not_read_from_booleans(tmp_path, source_dir):
    error = _error(tmp_path, VALID.format(path=source_dir).replace("seed: 3", "seed: true"))
    assert [(p.field, p.line) for p in error.problems] == [("seed", 2)]


@pytest.mark.parametrize(
    ("extra", "field", "line"),
    [
        ("image: {max_side: true}", "image.max_side", 6),
        ("image: {quality: '90'}", "image.quality", 6),
        ("tokens: {tokenizer: t.json, image_tokens: yes}", "tokens.image_tokens", 6),
        ("    unit_bytes: '4096'", "sources.0.unit_bytes", 10),
        ("    fetch: [{url: 'https://x/a.zip', unpack: 'yes'}]", "sources.0.fetch.0.unpack", 10),
    ],
)
def test_numbers_and_switches_are_not_read_from_booleans_or_strings(tmp_path, source_dir, extra, field, line):
    text = VALID.format(path=source_dir)
    text = text.replace("sources:\n", f"{extra}\nsources:\n") if extra[0] != " " else text + extra + "\n"
    error = _error(tmp_path, text)
    assert [(p.field, p.line) for p in error.problems if p.field == field] == [(field, line)]


def test_a_key_given_twice_is_refused_where_the_second_one_is(tmp_path, source_dir):
    error = _error(tmp_path, VALID.format(path=source_dir) + "    take: 1\n    take: 2\n")
    assert [(p.field, p.line, p.message) for p in error.problems] == [
        ("sources.0.take", 11, "key given twice")
    ]
    error = _error(tmp_path, "seed: 1\n" + VALID.format(path=source_dir))
    assert [(p.field, p.line) for p in error.problems] == [("seed", 3)]


def test_yaml_syntax_error_has_line(tmp_path):
    error = _error(tmp_path, "name: [unclosed\nseed: 1\n")
    assert error.problems[0].line == 2
    assert f'in "{tmp_path / "recipe.yaml"}", line 2' in error.problems[0].message


def test_hash_ignores_locations(tmp_path, source_dir):
    _, first = _load(tmp_path, VALID.format(path=source_dir))
    _, moved = _load(tmp_path, VALID.format(path=source_dir).replace("dir: out", "dir: elsewhere"))
    _, reseeded = _load(tmp_path, VALID.format(path=source_dir).replace("seed: 3", "seed: 4"))
    assert first.sha256() == moved.sha256() != reseeded.sha256()


FETCH = """\
    fetch:
      - url: https://example.org/a.jsonl
        to: ../a.jsonl
      - url: https://example.org/b.zip
        sha256: not-a-checksum
"""


def test_fetch_errors_name_the_download_field(tmp_path, source_dir):
    error = _error(tmp_path, VALID.format(path=source_dir) + FETCH)
    assert [(p.field, p.line) for p in error.problems] == [
        ("sources.0.fetch.0.to", 12),
        ("sources.0.fetch.1.sha256", 14),
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{url: 'http://x/'}", "names no plain file name; give `to`"),
        ("{url: 'https://x.example/a/..%2F..%2Fevil.zip'}", "names no plain file name; give `to`"),
        ("{url: 'https://x/?f=a.zip', to: data, unpack: true}", "an archive's URL must end in its file name"),
        ("{url: 'hf://datasets/owner/a.json'}", "expected hf://datasets/<owner>/<name>"),
        ("{url: 'hf://dataset/o/n/a.json', to: a.json}", "expected hf://datasets/<owner>/<name>"),
    ],
)
def test_a_download_must_name_its_file_when_the_recipe_is_read(tmp_path, source_dir, entry, message):
    error = _error(tmp_path, VALID.format(path=source_dir) + f"    fetch:\n      - {entry}\n")
    assert [(p.field, p.line) for p in error.problems] == [("sources.0.fetch.0", 11)]
    assert message in error.problems[0].message


def test_a_download_into_a_named_file_needs_no_name_in_its_url(tmp_path, source_dir):
    _, recipe = _load(
        tmp_path, VALID.format(path=source_dir) + "    fetch: [{url: 'http://x/', to: a.json}]\n"
    )
    assert recipe.sources[0].fetch[0].to == "a.json"


def test_a_fetched_source_may_not_exist_yet_and_its_urls_are_locations(tmp_path):
    fetch = "    fetch:\n      - url: https://example.org/a.jsonl\n"
    _, recipe = _load(tmp_path, VALID.format(path=tmp_path / "absent") + fetch)
    _, mirrored = _load(tmp_path, VALID.format(path=tmp_path / "absent") + fetch.replace("example", "mirror"))
    assert recipe.sources[0].fetch[0].to_folder == "." and recipe.sha256() == mirrored.sha256()


def test_an_eval_set_to_download_is_refused_not_ignored(tmp_path, source_dir):
    evals = (
        "decontaminate:\n  eval_sets:\n"
        f"    - {{source: conversations, name: e, path: {source_dir}, file: b.jsonl, upstreams: [chartqa]}}\n"
    )
    error = _error(tmp_path, VALID.format(path=source_dir) + evals)
    assert [p.field for p in error.problems] == ["decontaminate.eval_sets"]
    assert "eval sets are read where they are" in str(error)
