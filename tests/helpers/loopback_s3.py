"""A loopback S3 server for tests: moto's server mode on 127.0.0.1 at a free port, a child of the test
process, with its request log in a file (what a build uploaded is counted from it)."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dataprep.contract.store import ObjectPath
from dataprep.engine.settings import WORK_DIR

REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (/\S*) HTTP')  # the log colours some lines
WRITES = ("PUT", "POST", "DELETE")


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    log: Path

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self):
        """A boto3 client of this server: another program than the one under test."""
        import boto3

        env = self.env()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def put(self, path: str, data: bytes) -> None:
        """Write the object `bucket/key`."""
        bucket, key = path.split("/", 1)
        self.client().put_object(Bucket=bucket, Key=key, Body=data)

    def delete(self, path: str) -> None:
        bucket, key = path.split("/", 1)
        self.client().delete_object(Bucket=bucket, Key=key)

    def requests(self) -> list[str]:
        """Every request to the store so far (moto's own API aside): `METHOD /path?query`."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [f"{m[1]} {m[2]}" for line in lines if (m := REQUEST.search(line)) and "/moto-api" not in m[2]]

    def writes(self) -> list[str]:
        """Every request so far that wrote or deleted an object or bucket."""
        return [request for request in self.requests() if request.split(" ", 1)[0] in WRITES]

    def uploads(self, since: int, prefix: str) -> set[str]:
        """The objects under `prefix` (`bucket/key`) that writes after the first `since` uploaded (PUT,
        or POST of a multipart upload), by their names relative to it (pyarrow's folder markers aside)."""
        under = f"/{prefix}/"
        paths = [write.split()[1].split("?")[0] for write in self.writes()[since:] if write[0] == "P"]
        return {
            path.removeprefix(under) for path in paths if path.startswith(under) and not path.endswith("/")
        }


def objects(prefix: ObjectPath) -> dict[str, bytes]:
    """Every object under `prefix`, by its name relative to it."""
    found = {}
    for child in prefix.iterdir():
        if child.is_dir():
            found |= {f"{child.name}/{name}": data for name, data in objects(child).items()}
        else:
            found[child.name] = child.read_bytes()
    return found


def build_files(folder: Path) -> dict[str, bytes]:
    """The files a local build leaves for readers (its `.work/` aside), by their names relative to it:
    what a build into a store uploads."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and WORK_DIR not in path.relative_to(folder).parts
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def s3_server(folder: Path) -> Iterator[S3Server]:
    """Start moto's S3 server; stop it on exit."""
    port = _free_port()
    log = folder / "s3-requests.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield S3Server(endpoint, log)
    finally:
        process.terminate()
        process.wait(timeout=30)
