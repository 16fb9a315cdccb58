"""The spec front end: examples, the committed JSON Schema, template variables, init."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from specc.cli import app
from specc.spec import json_schema, json_schema_text
from specc.spec.load import load_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*/spec.yaml"))


def test_committed_schema_is_current():
    committed = (ROOT / "spec_schemas" / "specc-v1.schema.json").read_text(encoding="utf-8")
    assert committed == json_schema_text(), "stale schema: run `specc schema -o spec_schemas/specc-v1.schema.json`"


def test_schema_command_prints_it():
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json_schema()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_examples_validate_with_specc_and_json_schema(path):
    spec = load_spec(path)
    assert len(spec.principles) >= 5
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(json_schema()).validate(data)
    for p in spec.principles:
        assert p.rationale.strip(), f"{p.id} lacks a rationale"
        assert p.examples, f"{p.id} lacks examples"


def test_examples_are_substantial():
    general = load_spec(ROOT / "examples" / "aria" / "spec.yaml")
    assert len(general.principles) >= 8
    ids = {p.id for p in general.principles}
    assert {"honesty", "helpfulness", "harm-avoidance", "privacy", "calibrated-uncertainty", "user-autonomy"} <= ids
    support = load_spec(ROOT / "examples" / "support" / "spec.yaml")
    assert support.include, "the product spec pulls shared principles from another file"
    assert {"ai-disclosure", "customer-privacy"} <= {p.id for p in support.principles}


def test_json_schema_rejects_what_specc_rejects():
    validator = jsonschema.Draft202012Validator(json_schema())
    bad = {"specc": 1, "name": "x", "assistant": {"name": "A"}, "principles": [{"id": "a", "title": "t", "statement": "s", "wieght": 1}]}
    assert list(validator.iter_errors(bad))


def test_validate_prints_a_summary():
    result = CliRunner().invoke(app, ["validate", *map(str, EXAMPLES)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("ok ") == len(EXAMPLES)
    assert "principles" in result.stdout and "budget" in result.stdout


def test_template_variables_and_literal_braces(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "specc: 1\nname: demo\nassistant: {name: Nova, developer: Example Co}\n"
        "description: '{{ assistant.name }} by {{assistant.developer}}'\n"
        "principles:\n"
        "  - id: code\n    title: Show code\n"
        "    statement: '{{ assistant.name }} writes f\"{x}\" and {{ not_a_var }} and {% raw %} literally.'\n"
        "    subrules: ['{{ assistant.developer }} ships it']\n"
    )
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.description == "Nova by Example Co"
    st = spec.principles[0].statement
    assert st.startswith("Nova writes f\"{x}\"")
    assert "{{ not_a_var }}" in st and "{% raw %}" in st
    assert spec.principles[0].subrules == ["Example Co ships it"]


def test_includes_merge_and_resolve_relative_paths(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "a.yaml").write_text(
        "include: [b.yaml]\nprinciples:\n  - {id: a, title: A, statement: '{{ assistant.name }} does A'}\n"
    )
    (tmp_path / "shared" / "b.yaml").write_text("principles:\n  - {id: b, title: B, statement: B}\n")
    (tmp_path / "s.yaml").write_text(
        "specc: 1\nname: demo\nassistant: {name: Nova}\ninclude: [shared/a.yaml, shared/b.yaml]\n"
        "principles:\n  - {id: own, title: O, statement: O}\n"
    )
    spec = load_spec(tmp_path / "s.yaml")
    assert [p.id for p in spec.principles] == ["own", "a", "b"]
    assert spec.principles[1].statement == "Nova does A"
    assert spec.resolve("evals/x.jsonl") == tmp_path / "evals" / "x.jsonl"


def test_spec_hash_is_stable_and_sensitive(tmp_path):
    text = "specc: 1\nname: demo\nassistant: {name: Nova}\nprinciples:\n  - {id: a, title: A, statement: S}\n"
    (tmp_path / "s.yaml").write_text(text)
    h1 = load_spec(tmp_path / "s.yaml").sha256
    (tmp_path / "s.yaml").write_text("# a comment changes nothing\n" + text)
    assert load_spec(tmp_path / "s.yaml").sha256 == h1
    (tmp_path / "s.yaml").write_text(text.replace("statement: S", "statement: T"))
    assert load_spec(tmp_path / "s.yaml").sha256 != h1


def test_minimal_spec_gets_defaults(tmp_path):
    (tmp_path / "s.yaml").write_text("specc: 1\nname: demo\nassistant: {name: Nova}\nprinciples:\n  - {id: a, title: A, statement: S}\n")
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.corpus.budget.tokens == 200_000
    assert len(spec.corpus.documents.genres) >= 20
    assert spec.generator.provider == "local"


def test_init_writes_a_valid_spec_and_refuses_to_overwrite(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["init", str(tmp_path / "proj")])
    assert result.exit_code == 0, result.stderr
    load_spec(tmp_path / "proj" / "spec.yaml")
    again = runner.invoke(app, ["init", str(tmp_path / "proj")])
    assert again.exit_code == 2
    assert "already exists" in again.stderr


def test_help_lists_commands_with_descriptions():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("init", "validate", "schema"):
        assert name in result.stdout
