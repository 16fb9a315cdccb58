"""Command-line overrides of the spec: a larger budget is one flag away."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from specc.cli import app

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "examples" / "support" / "spec.yaml")


def _calls(*extra: str) -> int:
    result = CliRunner().invoke(app, ["plan", SPEC, "--json", "--cache", "/nonexistent/none.sqlite", *extra])
    assert result.exit_code == 2  # an explicit cache that does not exist is an input error
    result = CliRunner().invoke(app, ["plan", SPEC, "--json", *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["calls"]


def test_budget_flag_grows_the_plan(monkeypatch, tmp_path):
    monkeypatch.setenv("SPECC_CACHE", str(tmp_path / "cache.sqlite"))
    small, big = _calls(), _calls("--budget", "60000")
    assert big > small > 0


def test_budget_flag_rejects_nonsense():
    result = CliRunner().invoke(app, ["plan", SPEC, "--budget", "0"])
    assert result.exit_code == 2
    assert "--budget" in result.stderr
