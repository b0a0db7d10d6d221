"""Shared test set-up: one embedded Ray cluster per test session, generated upstream data."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster shared by the tests that build in-process."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 1024 * 1024,
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A loopback S3 server (moto) for the session, the standard AWS variables naming it set in this
    process (and so in the commands it starts); the session's Ray cluster may predate them, so store
    builds in process run on an `InProcessRunner`."""
    from helpers.loopback_s3 import s3_server

    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        saved = {name: os.environ.get(name) for name in server.env()}
        os.environ.update(server.env())
        try:
            yield server
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
