"""A build that falls far short of a quota writes what it has, says why, and exits 1 unless --allow-short."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from fakeserver import FakeServer  # noqa: E402
from responder import StageResponder  # noqa: E402
from stagekit import spec_dict, write_spec  # noqa: E402

from specc.cli import app  # noqa: E402
from specc.curate.shortfall import Hints, diagnose, fix_for  # noqa: E402
from specc.emit import iter_rows, read_manifest  # noqa: E402

runner = CliRunner()


class CannotGrade(StageResponder):
    """A judge that rambles without ever giving a verdict, like a 135M model does."""

    def judge(self, body, text):
        return "The reply talks to the user about the question they asked and mentions the assistant."


def _build(path: Path, server: FakeServer, tmp_path: Path, *extra: str):
    return runner.invoke(app, ["build", str(path), "--provider", "openai", "--model", "fake-model",
                               "--base-url", server.url, "--cache", str(tmp_path / "c.sqlite"),
                               "--out", str(tmp_path / "out"), "--quiet", *extra])


def test_a_build_whose_judge_cannot_grade_exits_1_and_says_why(tmp_path):
    path = write_spec(tmp_path / "spec.yaml", spec_dict(2, demonstrations={"kinds": ["direct"], "per_kind": 2}))
    with FakeServer(CannotGrade()) as server:
        res = _build(path, server, tmp_path)
        assert res.exit_code == 1, res.output
        out = tmp_path / "out"
        m = read_manifest(out)
        judged = json.loads((out / "manifest.json").read_text())["llm"]["per_stage"]["judge"]["calls"]
        # Written anyway, with an empty demonstrations config rather than a missing one.
        assert m["counts"]["documents"] > 0 and m["counts"]["demonstrations"] == 0
        assert m["configs"] == ["documents", "demonstrations"] and list(iter_rows(out, "demonstrations")) == []
        lines = [s["line"] for s in m["short"]]
        assert {(s["principle_id"], s["kind"]) for s in m["short"]} == {("p0", "demonstration"), ("p1", "demonstration")}
        per = Counter(s["principle_id"] for s in m["short"])
        # Every reply was judged twice: an unparseable verdict is retried once with the error shown.
        assert 2 * sum(s["of"] for s in m["short"]) == judged and per == {"p0": 1, "p1": 1}
        for s in m["short"]:
            assert s["line"].startswith(f"{s['principle_id']} demonstrations: 0 of ")
            assert f"judge:unparseable on {s['of']} of {s['of']} replies: the judge model cannot grade; " \
                   "use a capable judge or set demonstrations.judge: false" in s["line"]
        for line in lines:
            assert line in res.output  # one line per short principle × kind, in the error
        assert "--allow-short" in res.output and str(out) in res.output
        report = (out / "report.html").read_text()
        assert report.index("This build fell short") < report.index('class="cards"')
        assert all(line in report for line in lines)
        assert "This build fell short of its quotas" in (out / "README.md").read_text()

        assert m["short_kinds"] == [{"kind": "demonstration", "achieved": 0, "target": m["short"][0]["target"]
                                     + m["short"][1]["target"], "line": f"demonstrations: 0 of {m['short_kinds'][0]['target']:,} tokens"}]
        assert f"error: demonstrations: 0 of {m['short_kinds'][0]['target']:,} tokens: below half of the quota" in res.output

        again = _build(path, server, tmp_path, "--allow-short")
        assert again.exit_code == 0, again.output
        assert "warning: demonstrations: 0 of" in again.output and all(line in again.output for line in lines)


class CannotGradeOne(CannotGrade):
    """The judge fails on one principle's replies only."""

    def judge(self, body, text):
        return super().judge(body, text) if "(id: p0," in text else StageResponder.judge(self, body, text)


def test_one_short_principle_is_a_warning_when_the_kind_is_not_short(tmp_path):
    path = write_spec(tmp_path / "spec.yaml", spec_dict(4, demonstrations={"kinds": ["direct"], "per_kind": 2}))
    with FakeServer(CannotGradeOne()) as server:
        res = _build(path, server, tmp_path)
    assert res.exit_code == 0, res.output
    m = read_manifest(tmp_path / "out")
    assert m["short_kinds"] == [] and [(s["principle_id"], s["kind"]) for s in m["short"]] == [("p0", "demonstration")]
    assert "warning: 1 principle × kind quota(s) ended below half" in res.output and m["short"][0]["line"] in res.output
    assert "Below half of quota" in (tmp_path / "out" / "report.html").read_text()


def test_a_build_that_fills_its_quotas_exits_0_with_no_diagnosis(tmp_path):
    path = write_spec(tmp_path / "spec.yaml", spec_dict(2, demonstrations={"kinds": ["direct"], "per_kind": 2}))
    with FakeServer(StageResponder()) as server:
        res = _build(path, server, tmp_path)
    assert res.exit_code == 0, res.output
    assert read_manifest(tmp_path / "out")["short"] == []


def q(kind: str, target: int, achieved: int, pid: str = "p") -> dict:
    return {"principle_id": pid, "kind": kind, "target": target, "achieved": achieved, "records": 0}


def test_the_main_reason_and_its_denominator():
    drops = {("p", "document"): Counter({"filter:too_short": 7, "budget:over_quota": 9, "parse:placeholder": 2}),
             ("p", "demonstration"): Counter({"judge:fail": 3, "parse:truncated": 1})}
    answers = Counter({("p", "document"): 12, ("p", "judge"): 5})
    curated = Counter({("p", "document"): 10})
    short = diagnose([q("document", 1000, 300), q("demonstration", 400, 100), q("document", 100, 60, "ok")],
                     drops, answers, curated)
    assert [(s.kind, s.reason, s.count, s.of, s.unit) for s in short] == [
        ("document", "filter:too_short", 7, 10, "documents"), ("demonstration", "judge:fail", 3, 5, "replies")]
    assert short[0].line() == ("p documents: 300 of 1,000 tokens; filter:too_short on 7 of 10 documents: records "
                               "are too short; lower corpus.filters.min_words or raise corpus.documents.max_tokens")
    nothing = diagnose([q("demonstration", 500, 0)], {}, Counter(), Counter())
    assert nothing[0].reason == "" and "too few records were made" in nothing[0].line()


def test_every_fix_names_something_to_change():
    hints = Hints("Tess", embedded=True, small_prompts=False)
    for reason in ("ideas:unparseable", "scenarios:empty", "parse:truncated", "parse:placeholder", "filter:meta_talk",
                   "filter:no_assistant_name", "filter:wrong_language", "dedup:near_duplicate", "decontam:eval_overlap",
                   "generate:document_failed", "budget:over_quota", "judge:fail", "internal:reply_unusable"):
        fix = fix_for(reason, "document", hints)
        assert any(w in fix for w in ("corpus.", "generator.", "templates", "model", "endpoint", "examples")), reason
    assert "templates: small" in fix_for("ideas:unparseable", "document", hints)
    assert "Tess" in fix_for("filter:no_assistant_name", "document", hints)


def test_a_short_build_is_not_pushed_unless_allowed(tmp_path, monkeypatch):
    from fakehub import FakeHub

    token = "hf_fakeTOKENabcdefghijklmnopqrstuvwxyz0123"
    d = spec_dict(2, demonstrations={"kinds": ["direct"], "per_kind": 2})
    d["output"] = {"hub": {"repo": "example/short"}}
    path = write_spec(tmp_path / "spec.yaml", d)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN", token)
    with FakeHub(token=token) as hub, FakeServer(CannotGrade()) as server:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        res = _build(path, server, tmp_path, "--push")
        assert res.exit_code == 1 and "but not pushed" in res.output, res.output
        assert not any(p.startswith("/api/datasets/example/short") for _, p in hub.requests)
        res = _build(path, server, tmp_path, "--push", "--allow-short")
        assert res.exit_code == 0 and "pushed it to example/short" in res.output, res.output
        assert any(name.startswith("demonstrations/") for name in hub.files("example/short", "main"))
