"""The data-prep core stands without torch; the contract without the build's dependencies; sources
without Ray or shards; the engine without any one source; the bridge reads builds through the contract
alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "torchvision", "webdataset")


def test_core_dependencies_leave_torch_to_the_bridge_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    assert not any(name in core for name in ("torch", "transformers"))
    assert any(spec.startswith("torch") for spec in project["optional-dependencies"]["bridge"])


def test_importing_every_core_module_imports_no_torch():
    code = (
        "import sys, pkgutil, importlib, dataprep\n"
        "for module in pkgutil.walk_packages(dataprep.__path__, 'dataprep.'):\n"
        "    importlib.import_module(module.name)\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"


def test_webdataset_is_for_tests_and_benches_only():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any(spec.startswith("webdataset") for spec in extras["bridge"])
    assert any(spec.startswith("webdataset") for spec in extras["dev"])


def test_the_contract_imports_only_the_standard_library_pydantic_and_the_file_helpers():
    """Readers on a machine without the build's dependencies (a GPU image: no ray, pyarrow, ijson,
    webdataset) can import it."""
    code = (
        "import sys, pkgutil, importlib\n"
        "before = set(sys.modules)\n"
        "import dataprep.contract\n"
        "for module in pkgutil.walk_packages(dataprep.contract.__path__, 'dataprep.contract.'):\n"
        "    importlib.import_module(module.name)\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    allowed = {"pydantic", "pydantic_core", "typing_extensions", "annotated_types", "typing_inspection"}
    outside = {
        name
        for name in result.stdout.split()
        if name.split(".")[0] not in sys.stdlib_module_names | allowed
        and not name.startswith("_sysconfigdata")  # the standard library's build settings
        and name not in ("dataprep", "dataprep.files")
        and not name.startswith("dataprep.contract")
    }
    assert "dataprep.contract.sample" in result.stdout.split() and not outside, sorted(outside)


def test_the_contract_imports_pyarrow_only_where_it_opens_an_object_of_a_store():
    """A reader of local builds needs no pyarrow: `contract/store.py` alone imports `pyarrow.fs`, inside
    the functions that open an object (the test above proves nothing imports it on import)."""
    lazy, problems = [], []
    for path in sorted((REPO / "dataprep/contract").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if not any(name.split(".")[0] == "pyarrow" for name in names):
                continue
            if path.name == "store.py" and id(node) not in top_level:
                lazy.append(node.lineno)
            else:
                problems.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert lazy and not problems, problems


def _imports(folder: str) -> list[tuple[str, int, str]]:
    """(file, line, module) for every absolute import under `folder` (`from a import b` gives both `a`
    and `a.b`, since `b` may be a module)."""
    found = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            found += [(str(path.relative_to(REPO)), node.lineno, name) for name in names]
    return found


def test_the_bridge_imports_nothing_of_dataprep_but_its_contract():
    problems = [
        f"{file}:{line} imports {name}"
        for file, line, name in _imports("train_bridge")
        if name.split(".")[0] == "dataprep"
        and name != "dataprep"
        and not name.startswith("dataprep.contract")
    ]
    assert not problems, problems


def test_sources_know_nothing_of_ray_or_shards_and_the_engine_nothing_of_any_source():
    build_side = (
        "ray",
        "dataprep.engine",
        "dataprep.contract.shards",
        "dataprep.shard_writer",
        "dataprep.normalize",
    )
    problems = [
        f"{file}:{line} imports {name}"
        for file, line, name in _imports("dataprep/sources")
        if name == "ray"
        or name.startswith(tuple(f"{module}." for module in build_side))
        or name in build_side
    ]
    adapters = {path.stem for path in (REPO / "dataprep/sources").glob("*.py")} - {"__init__", "base"}
    problems += [
        f"{file}:{line} imports {name}"
        for file, line, name in _imports("dataprep/engine")
        if name.startswith("dataprep.sources.") and name.split(".")[2] in adapters
    ]
    assert not problems, problems


def test_exports_read_builds_through_the_contract_alone():
    """Exports know no engine, source or shard writer: a build is read as any reader reads it (token
    lengths counted, when asked, with the recipe's tokenizer counter; the dataset card, itself made
    from the manifest and shards alone)."""
    allowed = ("dataprep.contract", "dataprep.export", "dataprep.files", "dataprep.tokens", "dataprep.card")
    problems = [
        f"{file}:{line} imports {name}"
        for file, line, name in _imports("dataprep/export")
        if name.split(".")[0] == "dataprep" and name != "dataprep" and not name.startswith(allowed)
    ]
    assert not problems, problems
