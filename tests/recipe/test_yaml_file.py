"""YAML files read for validation: unparsable text, repeated keys and model errors name their line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from dataprep.recipe.yaml_file import FileProblems, parse_mapping, validation_problems


class Thing(BaseModel):
    items: list[int]


def test_problems_name_the_line_of_their_field(tmp_path):
    text = "items:\n  - 1\n  - two\n"
    data, tree = parse_mapping(text, tmp_path / "t.yaml", FileProblems)
    with pytest.raises(ValidationError) as caught:
        Thing.model_validate(data)
    ((field, line),) = [(p.field, p.line) for p in validation_problems(caught.value, tree)]
    assert (field, line) == ("items.1", 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [("a: 1\na: 2\n", "t.yaml:2: a: key given twice"), ("- 1\n", "t.yaml:1: <file>: expected a YAML mapping"),
     ("a: [1\n", "t.yaml:2: <file>: while parsing")],
)  # fmt: skip
def test_unusable_text_is_named(text, message):
    with pytest.raises(FileProblems, match=message):
        parse_mapping(text, Path("t.yaml"), FileProblems)
