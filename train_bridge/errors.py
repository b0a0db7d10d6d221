"""The bridge's one error type for bad inputs."""


class BridgeError(ValueError):
    """A problem with the command's inputs (options, manifest, shards, checkpoint): one line, no traceback."""
