"""Shared set-up of the engine tests: a generated conversations upstream per test module."""

from __future__ import annotations

import pytest

from helpers.upstream import write_conversations


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    root = tmp_path_factory.mktemp("upstream")
    facts = write_conversations(root / "mine")
    return root, facts
