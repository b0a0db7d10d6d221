"""`dataprep build | fetch | plan | reproduce | manifest show/diff/validate | inspect | report | export |
sources | schema | fixtures`."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from dataprep.contract.cli import add_version, at_least
from dataprep.engine.settings import EXECUTORS, resolved_executor
from dataprep.exit_status import MANUAL_MISSING, STRICT_WARNINGS
from dataprep.export.cli import add_export_parsers
from dataprep.progress import LOG_INTERVAL, VERBOSE_INTERVAL

POSITIVE = at_least(1)
SCHEMA_KINDS = ("manifest", "recipe", "upstream")
REPORT_GRID = 12  # `report`: samples shown per source


def _recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", type=Path, help="recipe YAML file")
    _output_arguments(parser, "output folder, or a store: s3://bucket/prefix (overrides output.dir)")
    parser.add_argument("--data-root", help="base folder of relative source paths (overrides data_root)")
    _engine_arguments(parser)
    parser.add_argument("--limit", type=POSITIVE, help="read at most N records per source (quick trials)")
    _log_arguments(parser)
    _mirror_argument(parser)


def _engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers", type=POSITIVE, help="at most this many work units at once (default: one per CPU)"
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="auto",
        help="what runs the work units: local worker processes, or Ray tasks (an embedded local Ray "
        "without an address); auto (default): Ray when the build joins a cluster, else processes",
    )
    parser.add_argument(
        "--ray-address", help="join this Ray cluster (default: RAY_ADDRESS; Ray runs the work units)"
    )


def _output_arguments(parser: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    parser.add_argument("--out", required=required, help=help)
    parser.add_argument(
        "--work-dir",
        help="for an output in a store: the local folder the build is made in, then uploaded from "
        "(overrides output.work_dir; default: a cache folder keyed by the URL)",
    )


def _log_arguments(parser: argparse.ArgumentParser) -> None:
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("--quiet", action="store_true", help="no progress lines (the summary still)")
    loudness.add_argument(
        "--verbose",
        action="store_true",
        help=f"progress lines every {VERBOSE_INTERVAL:g} s off a terminal, and the Ray workers' own output",
    )
    parser.add_argument(
        "--log-interval",
        type=_seconds,
        metavar="SECONDS",
        help=f"seconds between progress lines when stderr is not a terminal (default: {LOG_INTERVAL:g})",
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")


def _mirror_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mirror",
        help="fetch every http(s) and Google Drive URL from MIRROR/<host>/<path>[?query] instead "
        "(default: DATAPREP_MIRROR; hf:// URLs follow HF_ENDPOINT)",
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataprep", description=__doc__)
    add_version(parser)
    parser.set_defaults(discard_parts=False)  # only `build` offers --discard-parts
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build shards and manifest from a recipe")
    _recipe_arguments(build_parser)
    build_parser.add_argument(
        "--discard-parts",
        action="store_true",
        help="delete the normalized parts (.work/parts: the samples' JSON and every image not kept as "
        "its file) after a complete build; a later build re-normalizes",
    )
    build_parser.add_argument(
        "--strict",
        action="store_true",
        help=f"exit {STRICT_WARNINGS} when the build has warnings (a source kept nothing, missed its "
        "`expect`, or rejected much), for pipelines",
    )
    fetch = commands.add_parser(
        "fetch",
        help="download the recipe's files and public upstreams, then list the manual upstreams; "
        f"exit 0 when all are present, {MANUAL_MISSING} when manual ones are missing",
    )
    _recipe_arguments(fetch)
    fetch.add_argument(
        "--lock",
        action="store_true",
        help="write <recipe>.lock.json (URL, revision, size, sha256 of every file); while it exists, "
        "fetch and build refuse a file that differs",
    )
    plan = commands.add_parser("plan", help="what each source holds and will contribute; no shards")
    _recipe_arguments(plan)
    plan.add_argument(
        "--no-fetch",
        action="store_true",
        help="only the table of upstreams (size, on disk); download nothing",
    )
    _json_argument(plan)
    reproduce = commands.add_parser(
        "reproduce", help="rebuild a manifest's mixture from its recipe and compare the content"
    )
    reproduce.add_argument("manifest", help="manifest.json of the build to reproduce (a path or a URL)")
    _output_arguments(reproduce, "output folder (or store URL) of the rebuild", required=True)
    reproduce.add_argument(
        "--data-root", help="base folder of the sources' paths (default: working directory)"
    )
    reproduce.add_argument("--tokenizer", help="tokenizer.json for a build that counted tokens")
    _engine_arguments(reproduce)
    _log_arguments(reproduce)
    _mirror_argument(reproduce)

    manifest = commands.add_parser("manifest", help="inspect a manifest")
    manifest_commands = manifest.add_subparsers(dest="manifest_command", required=True)
    show = manifest_commands.add_parser("show", help="per-source table, totals and warnings")
    show.add_argument(
        "manifest", help="manifest.json: a path, or a store URL (s3://bucket/prefix/manifest.json)"
    )
    _json_argument(show)
    validate = manifest_commands.add_parser("validate", help="check every shard's size and sha256")
    validate.add_argument("manifest", help="manifest.json: a path, or a store URL")
    _json_argument(validate)
    diff = manifest_commands.add_parser("diff", help="what differs between two builds (exit 1 if anything)")
    diff.add_argument("old", help="the earlier build's manifest.json (a path or a URL)")
    diff.add_argument("new", help="the later build's manifest.json (a path or a URL)")
    _json_argument(diff)
    inspect = commands.add_parser("inspect", help="print samples of a build (and save their images)")
    inspect.add_argument("manifest", help="manifest.json: a path, or a store URL")
    inspect.add_argument("--source", help="only samples of this source (its recipe name)")
    inspect.add_argument("--key", help="only the sample with this key")
    inspect.add_argument("-n", type=POSITIVE, default=3, help="how many samples (default: %(default)s)")
    inspect.add_argument("--images", type=Path, help="also write each shown sample's images here")
    add_export_parsers(
        commands.add_parser("export", help="write a build in a trainer's own layout").add_subparsers(
            dest="export_command", required=True
        )
    )
    report = commands.add_parser("report", help="write one self-contained HTML page of a build")
    report.add_argument("manifest", help="the build's manifest.json: a path, or a store URL (s3://…)")
    report.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    report.add_argument(
        "--diff", metavar="OLD_MANIFEST", help="also show what changed since this build (a path or URL)"
    )
    report.add_argument(
        "--grid", type=POSITIVE, default=REPORT_GRID, help="samples shown per source (default: %(default)s)"
    )
    _json_argument(commands.add_parser("sources", help="list the source adapters"))
    schema = commands.add_parser("schema", help="print the JSON schema of recipes or manifests")
    schema.add_argument("kind", choices=SCHEMA_KINDS, help="which file's schema")
    fixtures = commands.add_parser("fixtures", help="write miniature upstreams of every source")
    fixtures.add_argument("out", type=Path, help="the folder to write them into (one subfolder each)")
    fixtures.add_argument("--seed", type=int, default=0, help="their random seed (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    # numpy's OpenBLAS starts a thread per core in every process that imports it (the driver, the
    # forkserver, each worker), and they spin for CPU at start-up; nothing here multiplies matrices.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = make_parser()
    args = parser.parse_args(argv)
    if getattr(args, "executor", None) == "processes" and args.ray_address:
        parser.error("--executor processes runs on this machine: it cannot join --ray-address")
    if _starts_workers_early(args):
        from dataprep.engine.process_runner import start_forkserver

        threading.Thread(target=start_forkserver, daemon=True).start()
    from dataprep.commands import run  # the commands' imports (Ray, pyarrow, images) once one runs

    return run(args)


def _starts_workers_early(args: argparse.Namespace) -> bool:
    """Whether a command starts its local workers' forkserver now, so that its imports of the job
    modules run beside this process's imports of the commands and the recipe's reading (~0.3 s
    each): a `build` on local processes into a local folder that holds no finished build (a re-run
    mostly starts no worker; an output in a store is built in a work folder found later). A recipe
    that cannot be read here is reported by the build."""
    if args.command != "build" or resolved_executor(args.executor, args.ray_address) != "processes":
        return False
    out = args.out or _output_dir(args.recipe)
    if out is None:
        return True
    out = out.removeprefix("file://")
    return "://" not in out and not (Path(out) / "manifest.json").is_file()


def _output_dir(recipe: Path) -> str | None:
    """The recipe's `output.dir`, read without checking the recipe (None when it cannot be read)."""
    import yaml

    try:
        return str(yaml.safe_load(recipe.read_text(encoding="utf-8"))["output"]["dir"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        return None


if __name__ == "__main__":
    sys.exit(main())
