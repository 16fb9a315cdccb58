"""`specc push`, `specc stats`, `specc show` through the real typer app."""

from __future__ import annotations

import pytest
from emit_fixtures import build_info, make_records, make_spec, tree_files
from fakehub import FakeHub
from typer.testing import CliRunner

from specc.cli import app
from specc.emit import emit, iter_rows

TOKEN = "hf_cliTOKEN0123456789abcdefghijklmnopqrs"


@pytest.fixture
def out(tmp_path):
    path = tmp_path / "out"
    emit(make_records(24, 12), make_spec(), path, build_info=build_info(), shard_bytes=3000)
    return path


def test_stats_prints_the_manifest_numbers(out):
    result = CliRunner().invoke(app, ["stats", str(out)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    for needle in ("demo-spec 1.2.0", "Principles", "honesty", "privacy", "filters:too_short", "gpt-test",
                   "documents/train-00000-of-", "50,000", "Coverage and diversity"):
        assert needle in text, needle
    assert "24" in text and "12" in text


def test_show_filters_by_principle_and_config(out):
    result = CliRunner().invoke(app, ["show", str(out), "--config", "demonstrations", "--principle", "care", "-n", "2"])
    assert result.exit_code == 0, result.output
    ids = [r["id"] for r in iter_rows(out, "demonstrations") if r["principle_id"] == "care"][:2]
    for rid in ids:
        assert rid in result.stdout
    assert "user:" in result.stdout and "assistant:" in result.stdout
    others = [r["id"] for r in iter_rows(out, "demonstrations") if r["principle_id"] != "care"]
    assert not any(rid in result.stdout for rid in others)

    docs = CliRunner().invoke(app, ["show", str(out), "-n", "1", "--max-chars", "20"])
    assert docs.exit_code == 0 and "[...]" in docs.stdout

    bad = CliRunner().invoke(app, ["show", str(out), "--principle", "nope"])
    assert bad.exit_code == 2 and "unknown principle 'nope'" in bad.stderr
    bad = CliRunner().invoke(app, ["show", str(out), "--config", "nope"])
    assert bad.exit_code == 2 and "unknown config" in bad.stderr


def test_commands_refuse_a_directory_that_is_not_an_output(tmp_path):
    for args in (["stats", str(tmp_path)], ["show", str(tmp_path)], ["push", str(tmp_path), "--repo", "a/b"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, args
        assert "not a specc output" in result.stderr


def test_push_uses_hf_endpoint_hf_token_and_the_spec_repo(out, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHub(token=TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        result = CliRunner().invoke(app, ["push", str(out)])  # repo from the spec's output.hub
        assert result.exit_code == 0, result.output
        assert "example/demo-spec" in result.stdout and "/commit/" in result.stdout
        files = hub.files("example/demo-spec")
        files.pop(".gitattributes")
        assert files == tree_files(out)
        assert hub.repo("example/demo-spec").private is True

        result = CliRunner().invoke(
            app, ["push", str(out), "--repo", "other/name", "--public", "--revision", "dev", "-m", "hello"]
        )
        assert result.exit_code == 0, result.output
        assert hub.repo("other/name").private is False
        assert hub.repo("other/name").commits[-1]["summary"] == "hello"
        assert hub.repo("other/name").commits[-1]["branch"] == "dev"

        monkeypatch.setenv("HF_TOKEN", "hf_wrong")
        result = CliRunner().invoke(app, ["push", str(out)])
        assert result.exit_code == 1 and "401" in result.stderr and "Traceback" not in result.output
