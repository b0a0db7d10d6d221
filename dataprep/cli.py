"""`dataprep build | fetch | plan | reproduce | manifest show/diff/validate | inspect | report | export |
sources | schema | fixtures`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dataprep.contract.cli import at_least
from dataprep.contract.manifest import Manifest, ManifestError, ShardReport, load_manifest
from dataprep.contract.shards import iter_samples
from dataprep.contract.store import Location, LocationError, ObjectPath, location
from dataprep.engine.build import build
from dataprep.engine.downloads import fetch_all, locked_files, recipe_upstreams
from dataprep.engine.entry import missing_inputs
from dataprep.engine.normalize_all import normalize_all
from dataprep.engine.output import check_output, output_lock
from dataprep.engine.plan import components_of, plan_mixture
from dataprep.engine.publish import work_folder
from dataprep.engine.runner import BuildError
from dataprep.engine.session import ray_session
from dataprep.engine.settings import BuildSettings
from dataprep.export.cli import add_export_parsers, run_export_command
from dataprep.files import sha256_file, write_atomic
from dataprep.fixtures import generate_all
from dataprep.fixtures.tokenizer import demo_tokenizer
from dataprep.html_report import GRID, render_report
from dataprep.paths import resolve_inside
from dataprep.recipe.load import RecipeError, load_recipe, recipe_from_data
from dataprep.recipe.lock import lock_path, locked_file, write_lock
from dataprep.recipe.model import Recipe
from dataprep.recipe.upstreams import Upstream, UpstreamError
from dataprep.report import (
    download_table,
    manifest_diff,
    manual_checklist,
    mixture_warnings,
    plan_table,
    sample_view,
    summary,
    upstream_table,
)
from dataprep.sources import registry

POSITIVE = at_least(1)
SCHEMAS: dict[str, type[BaseModel]] = {"manifest": Manifest, "recipe": Recipe, "upstream": Upstream}
MANUAL_MISSING = 3  # `fetch`: every public file is in place, but manual upstreams are missing
STRICT_WARNINGS = 4  # `build --strict`: built, with warnings


def _recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", type=Path, help="recipe YAML file")
    _output_arguments(parser, "output folder, or a store: s3://bucket/prefix (overrides output.dir)")
    parser.add_argument("--data-root", help="base folder of relative source paths (overrides data_root)")
    parser.add_argument("--workers", type=POSITIVE, help="at most this many work units at once")
    parser.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else embedded)")
    parser.add_argument("--limit", type=POSITIVE, help="read at most N records per source (quick trials)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    _mirror_argument(parser)


def _output_arguments(parser: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    parser.add_argument("--out", required=required, help=help)
    parser.add_argument(
        "--work-dir",
        help="for an output in a store: the local folder the build is made in, then uploaded from "
        "(overrides output.work_dir; default: a cache folder keyed by the URL)",
    )


def _mirror_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mirror",
        help="fetch every http(s) and Google Drive URL from MIRROR/<host>/<path>[?query] instead "
        "(default: DATAPREP_MIRROR; hf:// URLs follow HF_ENDPOINT)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataprep", description=__doc__)
    parser.set_defaults(discard_parts=False)  # only `build` offers --discard-parts
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build shards and manifest from a recipe")
    _recipe_arguments(build_parser)
    build_parser.add_argument(
        "--discard-parts",
        action="store_true",
        help="delete the normalized parts (.work/parts, as large as the shards) after a complete build; "
        "a later build re-normalizes",
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
    reproduce = commands.add_parser(
        "reproduce", help="rebuild a manifest's mixture from its recipe and compare the content"
    )
    reproduce.add_argument("manifest", help="manifest.json of the build to reproduce (a path or a URL)")
    _output_arguments(reproduce, "output folder (or store URL) of the rebuild", required=True)
    reproduce.add_argument(
        "--data-root", help="base folder of the sources' paths (default: working directory)"
    )
    reproduce.add_argument("--tokenizer", help="tokenizer.json for a build that counted tokens")
    reproduce.add_argument("--workers", type=POSITIVE, help="at most this many work units at once")
    reproduce.add_argument(
        "--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else embedded)"
    )
    reproduce.add_argument("--quiet", action="store_true", help="no progress lines")
    _mirror_argument(reproduce)

    manifest = commands.add_parser("manifest", help="inspect a manifest")
    manifest_commands = manifest.add_subparsers(dest="manifest_command", required=True)
    manifest_commands.add_parser("show", help="per-source table and totals").add_argument(
        "manifest", help="manifest.json: a path, or a store URL (s3://bucket/prefix/manifest.json)"
    )
    manifest_commands.add_parser("validate", help="check every shard's size and sha256").add_argument(
        "manifest", help="manifest.json: a path, or a store URL"
    )
    diff = manifest_commands.add_parser("diff", help="what differs between two builds (exit 1 if anything)")
    diff.add_argument("old")
    diff.add_argument("new")
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
        "--grid", type=POSITIVE, default=GRID, help="samples shown per source (default: %(default)s)"
    )
    commands.add_parser("sources", help="list the source adapters")
    schema = commands.add_parser("schema", help="print the JSON schema of recipes or manifests")
    schema.add_argument("kind", choices=sorted(SCHEMAS))
    fixtures = commands.add_parser("fixtures", help="write miniature upstreams of every source")
    fixtures.add_argument("out", type=Path)
    fixtures.add_argument("--seed", type=int, default=0)
    return parser


def _settings(args: argparse.Namespace, recipe: Recipe) -> BuildSettings:
    """The build's settings; an output in a store is built in its work folder (LocationError: an
    unsupported scheme, or --work-dir with a local output)."""
    out = location(args.out or recipe.output.dir)
    store = out if isinstance(out, ObjectPath) else None
    if store:
        joined = bool(args.ray_address or os.environ.get("RAY_ADDRESS"))
        out = work_folder(store, args.work_dir or recipe.output.work_dir, joined)
    elif args.work_dir:
        raise LocationError(f"--work-dir is for an output in a store; {out} is a local folder")
    return BuildSettings(
        out=out,
        store=store,
        workers=args.workers,
        ray_address=args.ray_address,
        limit=args.limit,
        progress=False if args.quiet else None,
        discard_parts=args.discard_parts,
        mirror=args.mirror,
        lock=lock_path(args.recipe) if "recipe" in args else None,  # `reproduce` has no recipe file
    )


def _build(args: argparse.Namespace) -> int:
    recipe = _load(args)
    settings = _settings(args, recipe)
    try:
        manifest = build(recipe, settings)
    except BuildError as error:
        print(f"build failed: {error}", file=sys.stderr)
        _checklist(recipe)
        return 1
    print(summary(manifest))
    print(f"\nmanifest: {_manifest_of(settings)}")
    _checklist(recipe)
    if args.strict and (warnings := mixture_warnings(manifest)):
        print(f"--strict: {len(warnings)} warnings (listed above)", file=sys.stderr)
        return STRICT_WARNINGS
    return 0


def _manifest_of(settings: BuildSettings) -> Location:
    return (settings.store or settings.out) / "manifest.json"


def _checklist(recipe: Recipe) -> int:
    """Print the manual upstreams the recipe names, present or missing with their steps; how many are missing."""
    checklist, missing = manual_checklist(recipe_upstreams(recipe), recipe.root)
    if checklist:
        print(f"\n{checklist}")
    return missing


def _reproduce(args: argparse.Namespace) -> int:
    """Rebuild from the recipe recorded in a manifest (locations given anew); exit 0 only when the
    new build has the same content hash, else list what differs."""
    original = load_manifest(args.manifest, verified=True)
    overrides: dict[str, Any] = {"output.dir": args.out}
    if args.data_root:
        overrides["data_root"] = args.data_root
    if original.recipe.get("tokens"):
        if not args.tokenizer:
            print("this build counted tokens: give its tokenizer with --tokenizer", file=sys.stderr)
            return 2
        overrides["tokens.tokenizer"] = args.tokenizer
    recipe = recipe_from_data(original.recipe, Path(f"{args.manifest} (its recipe)"), overrides)
    args.limit = original.limit  # a trial build is reproduced as the same trial
    settings = _settings(args, recipe)
    try:
        rebuilt = build(recipe, settings)
    except BuildError as error:
        print(f"build failed: {error}", file=sys.stderr)
        return 1
    changes = manifest_diff(original, rebuilt)
    if changes:
        print("not reproduced:\n" + "\n".join(changes))
        return 1
    print(f"reproduced: same content {rebuilt.content_sha256[:12]} in {_manifest_of(settings)}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    """Fetch, print what is in place and the manual checklist; with `--lock`, write the lock."""
    recipe = _load(args)
    settings = _settings(args, recipe)
    try:
        with ray_session(settings) as runner:
            downloads = fetch_all(recipe, runner, settings.mirror, *locked_files(settings))
    except BuildError as error:
        print(f"fetch failed: {error}", file=sys.stderr)
        _checklist(recipe)
        return 1
    print(download_table(recipe, [downloads[entry.label] for entry in recipe.sources]))
    if args.lock and settings.lock:
        files = {
            r.url: locked_file(r.url, r.bytes, r.sha256, r.revision)
            for reports in downloads.values()
            for r in reports
        }
        write_lock(settings.lock, files.values())
        print(f"\nlocked {len(files)} files in {settings.lock}")
    return MANUAL_MISSING if _checklist(recipe) else 0


def _plan(args: argparse.Namespace) -> int:
    recipe = _load(args)
    settings = _settings(args, recipe)
    if upstreams := recipe_upstreams(recipe):  # before anything is downloaded
        print(upstream_table(upstreams, recipe.root) + "\n", flush=True)
    if args.no_fetch:
        return 0
    try:
        check_output(recipe, settings.out)
        with output_lock(settings.out), ray_session(settings) as runner:
            fetch_all(recipe, runner, settings.mirror, *locked_files(settings))
            missing = missing_inputs(recipe)
            if missing:
                print("required inputs are missing:\n" + "\n".join(missing), file=sys.stderr)
                _checklist(recipe)
                return 1
            entries = normalize_all(recipe, settings, runner)
        shards = plan_mixture(components_of(entries), recipe)
    except BuildError as error:
        print(f"plan failed: {error}", file=sys.stderr)
        return 1
    print(plan_table(entries, shards))
    _checklist(recipe)
    return 0


def _load(args: argparse.Namespace) -> Recipe:
    overrides = {"data_root": args.data_root} if args.data_root else {}
    return load_recipe(args.recipe, overrides)


def _validate(path: Location) -> int:
    """Re-hash every shard, its sidecars, the rejects file and the reader files (dataset card, wids
    index), streamed from a store for a URL; check the manifest's own hash."""
    manifest = load_manifest(path)
    shard_problems = [_shard_problems(shard, path) for shard in manifest.shards]
    problems = [line for lines in shard_problems for line in lines] + _unlisted_files(manifest, path)
    if not _file_matches(path.parent / manifest.rejects_file, manifest.rejects_sha256):
        problems.append(f"{manifest.rejects_file}: missing, or its sha256 differs from the manifest")
    problems += [
        f"{file.path}: missing, or its sha256 differs from the manifest"
        for file in manifest.reader_files
        if not _file_matches(path.parent / file.path, file.sha256)
    ]
    if manifest.compute_content_sha256() != manifest.content_sha256:
        problems.append("manifest content hash does not match its content")
    for line in problems:
        print(line, file=sys.stderr)
    shards = len(manifest.shards)
    print(
        f"{sum(not lines for lines in shard_problems)} of {shards} shards verified; "
        + ("problems found" if problems else "all good")
    )
    return 1 if problems else 0


def _shard_problems(shard: ShardReport, manifest_path: Location) -> list[str]:
    """What differs between a shard (with its sidecar index and token counts) and the manifest."""
    shard_path = manifest_path.parent / shard.path
    if not shard_path.exists():
        return [f"{shard.path}: missing"]
    if shard_path.stat().st_size != shard.bytes or sha256_file(shard_path) != shard.sha256:
        return [f"{shard.path}: size or sha256 differs from the manifest"]
    return [
        f"{sidecar}: missing, or its sha256 differs from the manifest"
        for sidecar, sha256 in ((shard.index, shard.index_sha256), (shard.tokens, shard.tokens_sha256))
        if sidecar and not _file_matches(manifest_path.parent / sidecar, sha256)
    ]


def _unlisted_files(manifest: Manifest, path: Location) -> list[str]:
    """Files beside the shards that the manifest does not list (a reader globbing `*.tar` would
    take them for part of the mixture)."""
    listed = {path.parent / shard.path for shard in manifest.shards}
    listed |= {
        path.parent / sidecar
        for shard in manifest.shards
        for sidecar in (shard.index, shard.tokens)
        if sidecar
    }
    folders = {file.parent for file in listed}
    return [
        f"{file.relative_to(path.parent)}: not in the manifest"
        for folder in sorted(folders)
        for file in sorted(folder.iterdir())
        if file not in listed
    ]


def _file_matches(path: Location, sha256: str | None) -> bool:
    return path.exists() and sha256_file(path) == sha256


def _diff(old: str, new: str) -> int:
    before, after = load_manifest(old, verified=True), load_manifest(new, verified=True)
    changes = manifest_diff(before, after)
    print("\n".join(changes) if changes else f"same content ({after.content_sha256[:12]})")
    return 1 if changes else 0


def _inspect(args: argparse.Namespace) -> int:
    manifest_path = location(args.manifest)
    manifest = load_manifest(manifest_path)
    shown = 0
    for path in manifest.shard_paths(manifest_path):
        try:
            for key, sample, images in iter_samples(path):
                if shown == args.n:
                    return 0
                if (args.source and sample.source != args.source) or (args.key and key != args.key):
                    continue
                print(sample_view(key, sample, images) + "\n")
                shown += 1
                if args.images:
                    args.images.mkdir(parents=True, exist_ok=True)
                    for suffix, data in images.items():
                        resolve_inside(args.images, f"{key}.{suffix}").write_bytes(data)
        except (tarfile.TarError, KeyError, ValueError) as error:  # UnsafePath is a ValueError
            print(
                f"{path}: not a readable shard ({error!r}); `dataprep manifest validate` checks them all",
                file=sys.stderr,
            )
            return 1
    if shown == 0:
        names = ", ".join(source.name for source in manifest.sources)
        print(f"no sample matches (sources: {names})", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            return _build(args)
        if args.command == "plan":
            return _plan(args)
        if args.command == "fetch":
            return _fetch(args)
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "manifest" and args.manifest_command == "show":
            print(summary(load_manifest(args.manifest)))
            return 0
        if args.command == "manifest" and args.manifest_command == "diff":
            return _diff(args.old, args.new)
        if args.command == "manifest":
            return _validate(location(args.manifest))
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "export":
            return run_export_command(args)
        if args.command == "report":
            old = location(args.diff) if args.diff else None
            page = render_report(location(args.manifest), old, args.grid)
            write_atomic(args.out, page.encode("utf-8"))
            print(f"wrote {args.out}")
            return 0
        if args.command == "schema":
            print(json.dumps(SCHEMAS[args.kind].model_json_schema(), indent=2, ensure_ascii=False))
            return 0
        if args.command == "sources":
            for name, adapter in registry().items():
                print(f"{name:14} v{adapter.version}  {adapter.licence}")
            return 0
        for name, facts in generate_all(args.out, seed=args.seed).items():
            expected = facts.get("expected_samples", "?")
            print(
                f"{name:14} {args.out / name}  {expected} samples expected with the adapter's default options"
            )
        print(f"{'tokenizer':14} {demo_tokenizer(args.out)}  (miniature BPE, for token statistics)")
        return 0
    except (RecipeError, UpstreamError, ManifestError, LocationError) as error:
        print(error, file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
