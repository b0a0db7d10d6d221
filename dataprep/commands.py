"""What each `dataprep` command does, once `dataprep.cli` has parsed its arguments (imported only then,
so `--help` and usage errors start no Ray, pyarrow or image codecs; Ray itself is imported only by a
command that runs on Ray, jinja2 only by `report`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

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
from dataprep.engine.session import engine_session
from dataprep.engine.settings import BuildSettings, cluster_address
from dataprep.exit_status import MANUAL_MISSING, STRICT_WARNINGS
from dataprep.export.command import run_export_command
from dataprep.files import sha256_file, write_atomic
from dataprep.fixtures import generate_all
from dataprep.fixtures.tokenizer import demo_tokenizer
from dataprep.paths import resolve_inside
from dataprep.progress import VERBOSE_INTERVAL
from dataprep.recipe.load import RecipeError, load_recipe, recipe_from_data
from dataprep.recipe.lock import lock_path, locked_file, write_lock
from dataprep.recipe.model import Recipe
from dataprep.recipe.upstreams import Upstream, UpstreamError
from dataprep.report import (
    download_table,
    manifest_diff,
    manual_checklist,
    mixture_warnings,
    plan_rows,
    plan_table,
    sample_view,
    summary,
    upstream_rows,
    upstream_table,
)
from dataprep.sources import registry

SCHEMAS: dict[str, type[BaseModel]] = {"manifest": Manifest, "recipe": Recipe, "upstream": Upstream}


def _settings(args: argparse.Namespace, recipe: Recipe) -> BuildSettings:
    """The build's settings; an output in a store is built in its work folder (LocationError: an
    unsupported scheme, or --work-dir with a local output)."""
    out = location(args.out or recipe.output.dir)
    store = out if isinstance(out, ObjectPath) else None
    if store:
        joined = args.executor != "processes" and cluster_address(args.ray_address) is not None
        out = work_folder(store, args.work_dir or recipe.output.work_dir, joined)
    elif args.work_dir:
        raise LocationError(f"--work-dir is for an output in a store; {out} is a local folder")
    return BuildSettings(
        out=out,
        store=store,
        workers=args.workers,
        ray_address=args.ray_address,
        executor=args.executor,
        limit=args.limit,
        progress=False if args.quiet else None,
        log_interval=args.log_interval or (VERBOSE_INTERVAL if args.verbose else None),
        verbose=args.verbose,
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
        with engine_session(settings) as runner:
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
    """The upstreams (before anything is downloaded), then what each source will contribute; with
    `--json`, one JSON document of both at the end instead of tables."""
    recipe = _load(args)
    settings = _settings(args, recipe)
    upstreams = upstream_rows(recipe_upstreams(recipe), recipe.root)
    if upstreams and not args.json:
        print(upstream_table(upstreams) + "\n", flush=True)
    if args.no_fetch:
        return _print_json({"upstreams": upstreams}) if args.json else 0
    try:
        check_output(recipe, settings.out)
        with output_lock(settings.out), engine_session(settings) as runner:
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
    rows = plan_rows(entries, shards)
    if args.json:
        samples = sum(row["will_produce"] for row in rows)
        return _print_json(
            {"upstreams": upstreams, "sources": rows, "samples": samples, "shards": len(shards)}
        )
    print(plan_table(rows, len(shards)))
    _checklist(recipe)
    return 0


def _print_json(document: Any) -> int:
    """Print one JSON document (for scripts: `--json`); exit status 0."""
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def _load(args: argparse.Namespace) -> Recipe:
    overrides = {"data_root": args.data_root} if args.data_root else {}
    return load_recipe(args.recipe, overrides)


def _validate(path: Location, as_json: bool) -> int:
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
    shards, verified = len(manifest.shards), sum(not lines for lines in shard_problems)
    if as_json:
        _print_json({"ok": not problems, "shards": shards, "verified": verified, "problems": problems})
    else:
        for line in problems:
            print(line, file=sys.stderr)
        print(f"{verified} of {shards} shards verified; " + ("problems found" if problems else "all good"))
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


def _diff(old: str, new: str, as_json: bool) -> int:
    before, after = load_manifest(old, verified=True), load_manifest(new, verified=True)
    changes = manifest_diff(before, after)
    if as_json:
        _print_json(
            {
                "same": not changes,
                "changes": changes,
                "old": before.content_sha256,
                "new": after.content_sha256,
            }
        )
    else:
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


def run(args: argparse.Namespace) -> int:
    """Run the command the parsed `args` name; its exit status."""
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
            manifest = load_manifest(args.manifest)
            if args.json:
                return _print_json(
                    {"manifest": manifest.model_dump(mode="json"), "warnings": mixture_warnings(manifest)}
                )
            print(summary(manifest))
            return 0
        if args.command == "manifest" and args.manifest_command == "diff":
            return _diff(args.old, args.new, args.json)
        if args.command == "manifest":
            return _validate(location(args.manifest), args.json)
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "export":
            return run_export_command(args)
        if args.command == "report":
            from dataprep.html_report import render_report  # jinja2: for this command only

            old = location(args.diff) if args.diff else None
            page = render_report(location(args.manifest), old, args.grid)
            write_atomic(args.out, page.encode("utf-8"))
            print(f"wrote {args.out}")
            return 0
        if args.command == "schema":
            print(json.dumps(SCHEMAS[args.kind].model_json_schema(), indent=2, ensure_ascii=False))
            return 0
        if args.command == "sources":
            adapters = registry()
            if args.json:
                return _print_json(
                    [
                        {"name": name, "version": a.version, "licence": a.licence}
                        for name, a in adapters.items()
                    ]
                )
            for name, adapter in adapters.items():
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
