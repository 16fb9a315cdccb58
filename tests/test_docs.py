"""Generated docs stay current, and the docs site builds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from specc import docgen

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("rel", sorted(map(str, docgen.PAGES)))
def test_generated_reference_is_current(rel):
    committed = (ROOT / rel).read_text(encoding="utf-8")
    assert committed == docgen.PAGES[Path(rel)](), f"{rel} is stale: run `python -m specc.docgen`"


def test_cli_reference_covers_every_command():
    text = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    for cmd in ("init", "validate", "schema", "plan", "diff", "build", "push", "stats", "show", "report", "cache", "import",
                "batches", "eval run", "eval compare"):
        assert f"## `specc {cmd}" in text, cmd


def test_mkdocs_builds_strict(tmp_path):
    if shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists():
        pytest.skip("mkdocs not installed (pip install 'specc[dev]')")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "getting-started" / "index.html").exists()
