"""Patient downloads: faults injected by the loopback server (dropped connection, 429 with Retry-After,
500, a short body, a stall) each end with the right bytes, resumed with a Range request."""

from __future__ import annotations

import hashlib
import os
import time
from email.utils import formatdate
from pathlib import Path

import pytest
import requests

from dataprep import fetch as fetch_module
from dataprep.fetch import FetchError, _retry_after, fetch
from dataprep.recipe.model import Download

from helpers.loopback_http import Fault, Site, serve

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
CUT = 120_000


def fetched_with(tmp_path: Path, faults: list[Fault], **patience: float) -> Site:
    site = Site(files={"/a.bin": DATA}, faults={"/a.bin": faults})
    with serve(site):
        done = fetch(tmp_path, Download(url=f"{site.url}/a.bin", sha256=SHA), backoff=0.01, **patience)
    assert (tmp_path / "a.bin").read_bytes() == DATA and done.sha256 == SHA
    return site


@pytest.mark.parametrize("kind", ["drop", "short"])
def test_a_body_cut_short_is_resumed_with_a_range_request(tmp_path: Path, kind: str) -> None:
    """A reset connection and a clean close short of the Content-Length both leave a partial file."""
    site = fetched_with(tmp_path, [Fault(after=CUT, kind=kind)])
    (first, _), (second, ranged) = site.requests
    assert first == second == "/a.bin" and ranged is not None
    assert CUT - fetch_module.CHUNK <= int(ranged.removeprefix("bytes=").rstrip("-")) <= CUT


def test_a_stall_mid_body_is_dropped_after_the_read_timeout_and_resumed(tmp_path: Path) -> None:
    site = fetched_with(tmp_path, [Fault(after=CUT, kind="stall", seconds=3.0)], stall=0.4)
    assert [ranged for _, ranged in site.requests] == [
        None,
        f"bytes={CUT // fetch_module.CHUNK * fetch_module.CHUNK}-",
    ]
    assert site.times[1] - site.times[0] < 2.5  # resumed once silent for 0.4 s, not when the server gave up


def test_429_waits_as_long_as_retry_after_says(tmp_path: Path) -> None:
    site = fetched_with(tmp_path, [Fault(status=429, headers={"Retry-After": "1"})])
    assert len(site.requests) == 2 and site.times[1] - site.times[0] >= 1.0  # not the 0.01 s backoff


def test_503_with_an_http_date_and_500_are_retried(tmp_path: Path) -> None:
    later = formatdate(time.time() + 2, usegmt=True)  # whole seconds: at least 1 s ahead
    site = fetched_with(
        tmp_path, [Fault(status=503, headers={"Retry-After": later}), Fault(status=500), Fault(status=500)]
    )
    assert len(site.requests) == 4 and site.times[1] - site.times[0] >= 0.9
    assert site.times[3] - site.times[1] < 0.9  # plain backoff after the 500s


def test_retry_after_is_capped_and_nonsense_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(value: str) -> requests.Response:
        response = requests.Response()
        response.headers["Retry-After"] = value
        return response

    assert _retry_after(answer("7")) == 7.0
    assert _retry_after(answer("86400")) == fetch_module.RETRY_AFTER_CAP
    assert _retry_after(answer("Wed, 21 Oct 2015 07:28:00 GMT")) == 0.0  # in the past: at once
    assert _retry_after(answer("soon")) is None and _retry_after(requests.Response()) is None


def test_attempts_that_bring_bytes_do_not_use_up_the_retries(tmp_path: Path) -> None:
    """Four short bodies in a row with retries=1: each attempt got further, so none counts against it."""
    site = fetched_with(tmp_path, [Fault(after=100_000, kind="short")] * 4, retries=1)
    starts = [int(r.removeprefix("bytes=").rstrip("-")) for _, r in site.requests[1:]]
    assert len(starts) == 4 and starts == sorted(starts)


def test_failures_in_a_row_give_up_after_the_retries(tmp_path: Path) -> None:
    site = Site(files={"/a.bin": DATA}, faults={"/a.bin": [Fault(status=500)] * 3})
    with serve(site), pytest.raises(FetchError, match="HTTP 500 \\(gave up after 3 attempts in a row\\)"):
        fetch(tmp_path, Download(url=f"{site.url}/a.bin"), retries=2, backoff=0.01)
    assert len(site.requests) == 3
    assert fetch_module.RETRIES > 4 and fetch_module.BACKOFF_CAP >= fetch_module.BACKOFF
