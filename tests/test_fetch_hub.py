"""hf:// files through huggingface_hub against a loopback hub: the revision's commit, size and sha256
come from the hub's metadata (HEAD), the bytes from that commit; the hub's sha256 checks a transfer
without a pin; the token reaches the hub and nothing else, and shows nowhere."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dataprep.fetch import STATE_DIR, Access, ChecksumMismatch, FetchError, fetch
from dataprep.recipe.model import Download

from helpers.loopback_http import Site, serve
from helpers.served_upstreams import hub_commit, hub_served

DATA = os.urandom(200_000)
SHA = hashlib.sha256(DATA).hexdigest()
URL = "hf://datasets/Lin-Chen/ShareGPT4V/sharegpt4v_instruct_gpt4-vision_cap100k.json"
AT_MAIN = "/datasets/Lin-Chen/ShareGPT4V/resolve/main/sharegpt4v_instruct_gpt4-vision_cap100k.json"
TOKEN = "hf_loopbackSecretToken0123456789"


def _at_commit() -> str:
    return AT_MAIN.replace("/main/", f"/{hub_commit(URL)}/")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    """The loopback hub as HF_ENDPOINT, serving one LFS file; no token."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with serve(hub_served(URL, DATA).site()) as site:
        monkeypatch.setenv("HF_ENDPOINT", site.url)
        yield site


def test_the_hub_names_the_commit_and_sha256_and_the_bytes_come_from_that_commit(tmp_path: Path, hub: Site):
    done = fetch(tmp_path, Download(url=URL))
    assert hub.heads == [AT_MAIN] and hub.requests == [(_at_commit(), None)]
    assert done.revision == hub_commit(URL) and done.sha256 == SHA and not done.pinned
    assert (tmp_path / "sharegpt4v_instruct_gpt4-vision_cap100k.json").read_bytes() == DATA
    assert fetch(tmp_path, Download(url=URL)) == done and len(hub.heads) == 1  # done: the hub is not asked


def test_a_corrupted_transfer_is_caught_by_the_hubs_sha256_without_a_pin(tmp_path: Path, hub: Site):
    hub.files[_at_commit()] = DATA[:-1] + bytes([DATA[-1] ^ 1])  # same size, one bit flipped
    with pytest.raises(FetchError, match=f"is not the {SHA} the hub gives for it"):
        fetch(tmp_path, Download(url=URL))
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.rglob("*.partial"))


def test_a_pin_the_hub_contradicts_is_refused_before_any_byte_is_transferred(tmp_path: Path, hub: Site):
    with pytest.raises(ChecksumMismatch, match=f"sha256 {SHA} does not match the pinned 0{{64}}"):
        fetch(tmp_path, Download(url=URL, sha256="0" * 64))
    assert hub.heads == [AT_MAIN] and hub.requests == []


def test_the_token_goes_to_the_hub_only_and_is_written_nowhere(
    tmp_path: Path, hub: Site, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.files["/example.org/a.json"] = b"[]"
    access = Access.here(mirror=hub.url)
    fetch(tmp_path, Download(url=URL), access=access)
    fetch(tmp_path, Download(url="https://example.org/a.json"), access=access)  # from the mirror
    assert hub.authorizations == [  # HEAD, GET; the mirror
        (AT_MAIN, f"Bearer {TOKEN}"),
        (_at_commit(), f"Bearer {TOKEN}"),
        ("/example.org/a.json", None),
    ]
    assert TOKEN not in repr(access) and TOKEN not in str(access)
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path


def test_a_refused_hub_request_says_where_a_token_comes_from_and_never_shows_it(
    tmp_path: Path, hub: Site, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.status[AT_MAIN] = [403]
    with pytest.raises(FetchError) as refused:
        fetch(tmp_path, Download(url=URL))
    assert "set HF_TOKEN, or log in with `hf auth login`" in str(refused.value)
    assert TOKEN not in str(refused.value) and hub.requests == []
    assert not (tmp_path / STATE_DIR).exists() or not list((tmp_path / STATE_DIR).glob("*.json"))
