"""Running a stage's jobs on Ray, in local processes and in process: one failure summary, the
progress line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dataprep.engine.build import build
from dataprep.engine.downloads import FetchJob
from dataprep.engine.entry import HashJob
from dataprep.engine.process_runner import ProcessRunner
from dataprep.engine.ray_runner import RayRunner
from dataprep.engine.runner import BuildError, InProcessRunner
from dataprep.engine.settings import BuildSettings
from dataprep.fetch import Access, fetch
from dataprep.files import sha256_file
from dataprep.recipe.load import load_recipe
from dataprep.recipe.model import Download

from helpers.loopback_http import Site, serve
from helpers.upstream import recipe_yaml


@pytest.fixture(params=["ray", "processes", "in-process"])
def runner(request):
    """Each runner, at most 2 jobs in flight."""
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
        yield RayRunner(workers=2, progress=False)
    elif request.param == "processes":
        processes = ProcessRunner(workers=2, progress=False)
        yield processes
        processes.stop()
    else:
        yield InProcessRunner()


def test_units_failing_alike_are_reported_once_with_their_count(runner):
    """A full disk fails every unit with one error: the build says so in one line, not one per unit."""
    jobs = [(f"unit {i}", HashJob("/dev/null/x")) for i in range(5)]
    jobs.append(("unit odd", HashJob("/nowhere/at/all")))
    with pytest.raises(BuildError) as failed:
        runner.run("normalize", iter(jobs), len(jobs))
    heading, *lines = str(failed.value).splitlines()
    assert heading == "normalize failed for 6 of 6 units:" and len(lines) == 2
    assert any(
        re.fullmatch(
            r"unit \d: NotADirectoryError: \[Errno 20\] Not a directory: '/dev/null/x' \(and 4 more units\)",
            line,
        )
        for line in lines
    )
    assert "unit odd: FileNotFoundError: [Errno 2] No such file or directory: '/nowhere/at/all'" in lines


def test_results_come_in_job_order_and_jobs_are_made_only_as_they_start(runner, tmp_path):
    files = []
    for index in range(5):
        files.append(tmp_path / f"{index}.txt")
        files[-1].write_text("x" * index)
    started = []

    def jobs():
        for path in files:
            started.append(path)
            yield str(path), HashJob(str(path))

    results = runner.run("hash", jobs(), len(files))
    assert results == [sha256_file(path) for path in files]
    assert started == files


def test_progress_counts_records_read_and_samples_written(ray_cluster, upstream, tmp_path, capsys):
    data_root, _ = upstream
    recipe_file = tmp_path / "mix.yaml"
    recipe_file.write_text(recipe_yaml("mix", data_root, tmp_path / "out"))
    settings = BuildSettings(out=tmp_path / "out", progress=True, executor="ray")
    manifest = build(load_recipe(recipe_file), settings)
    lines = {
        line.split("]")[0] + "]": line
        for line in capsys.readouterr().err.replace("\x1b[2K", "").replace("\n", "\r").split("\r")
        if line
    }
    assert f" {manifest.totals.read} records" in lines["[normalize]"]
    assert f" {manifest.totals.samples} records" in lines["[write]"]


def _fetch_jobs(root: Path, site: Site, names: list[str]) -> list[tuple[str, FetchJob]]:
    return [(name, FetchJob(str(root), Download(url=f"{site.url}/{name}"), Access.here())) for name in names]


def test_jobs_already_done_are_not_shipped_and_ray_starts_only_for_one_that_must_run(ray_cluster, tmp_path):
    starts = []
    files = {f"/{name}": name.encode() * 100 for name in ("a.json", "b.json", "c.json")}
    with serve(Site(files=files)) as site:
        fetch(tmp_path, Download(url=f"{site.url}/a.json"))
        fetch(tmp_path, Download(url=f"{site.url}/c.json"))
        runner = RayRunner(workers=2, progress=False, start=lambda: starts.append("ray"))
        done = runner.run("fetch", _fetch_jobs(tmp_path, site, ["a.json", "c.json"]), 2)
        assert starts == [] and [fetched.path for fetched in done] == ["a.json", "c.json"]
        every = runner.run("fetch", _fetch_jobs(tmp_path, site, ["a.json", "b.json", "c.json"]), 3)
        again = runner.run("fetch", _fetch_jobs(tmp_path, site, ["b.json"]), 1)
    assert starts == ["ray"]  # once, for b.json, run by a Ray task
    assert [fetched.path for fetched in every] == ["a.json", "b.json", "c.json"] and again == every[1:2]
    assert [path for path, _ in site.requests] == ["/a.json", "/c.json", "/b.json"]
