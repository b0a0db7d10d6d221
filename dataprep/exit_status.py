"""The `dataprep` command's exit statuses beyond 0 (done), 1 (failed) and 2 (a usage error)."""

MANUAL_MISSING = 3  # `fetch`: every public file is in place, but manual upstreams are missing
STRICT_WARNINGS = 4  # `build --strict`: built, with warnings
