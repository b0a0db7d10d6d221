"""What readers of a build may rely on: the shard sample, the tar/sidecar format and the manifest.

Imports only the standard library, pydantic and `dataprep.files`, so a trainer can read a build
without the build's dependencies (Ray, pyarrow, image codecs); `store.py` imports `pyarrow.fs` only when
an object of a store (`s3://`, `gs://`) is opened."""
