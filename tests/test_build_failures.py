"""A build fails loudly, with its cause, on anything that is not a bad model answer."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from fakeserver import FakeServer  # noqa: E402
from responder import StageResponder  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

from specc.cli import app  # noqa: E402
from specc.prompts import builtin_template  # noqa: E402

runner = CliRunner()


def _build(path: Path, server: FakeServer, tmp_path: Path, *extra: str):
    return runner.invoke(app, ["build", str(path), "--provider", "openai", "--model", "fake-model",
                               "--base-url", server.url, "--cache", str(tmp_path / "c.sqlite"),
                               "--out", str(tmp_path / "out"), "--quiet", *extra])


def _with_document_template(tmp_path: Path, line: str) -> Path:
    source = builtin_template("document").source.replace("{% block user %}\n", "{% block user %}\n" + line + "\n", 1)
    (tmp_path / "document.j2").write_text(source, encoding="utf-8")
    d = spec_dict(2)
    d["templates"] = {"document": "document.j2"}
    return write_spec(tmp_path / "spec.yaml", d)


def test_a_template_with_an_unknown_variable_fails_the_build(tmp_path):
    path = _with_document_template(tmp_path, "Mood: {{ mood }}")
    with FakeServer(StageResponder()) as server:
        res = _build(path, server, tmp_path)
    assert res.exit_code == 2, res.output
    assert "document.j2" in res.output and "mood" in res.output and "unknown variable" in res.output
    assert not (tmp_path / "out").exists()


def test_an_expression_error_in_a_template_names_the_template(tmp_path):
    path = _with_document_template(tmp_path, "{{ idea.title / 2 }}")
    with FakeServer(StageResponder()) as server:
        res = _build(path, server, tmp_path)
    assert res.exit_code == 2, res.output
    assert "document.j2" in res.output and "TypeError" in res.output


def test_a_bug_inside_a_stage_fails_the_build_with_its_cause(tmp_path, monkeypatch):
    from specc.stages.document import DocumentStage

    def broken(self, pipe, task, result):
        return {}["genre"]

    monkeypatch.setattr(DocumentStage, "children", broken)
    path = write_spec(tmp_path / "spec.yaml", spec_dict(2))
    with FakeServer(StageResponder()) as server:
        res = _build(path, server, tmp_path)
    assert res.exit_code == 1, res.output
    assert "the document stage failed" in res.output and "KeyError: 'genre'" in res.output
    assert not (tmp_path / "out").exists()
