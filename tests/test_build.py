"""`specc build` end to end against the fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from fakeserver import FakeServer, Reply, prompt_sha  # noqa: E402
from responder import StageResponder, stage_of  # noqa: E402
from stagekit import drive, edited, spec_dict, write_spec  # noqa: E402

from specc.build import run_build, with_overrides  # noqa: E402
from specc.generate.cache import Cache  # noqa: E402
from specc.cli import app  # noqa: E402
from specc.errors import CostCapError  # noqa: E402
from specc.plan import diff_specs, make_plan  # noqa: E402
from specc.plan.quotas import compute_quotas  # noqa: E402
from specc.plan.sizing import records_needed  # noqa: E402
from specc.spec.load import load_spec  # noqa: E402
from specc.stages import Context, Pipeline, llm_id  # noqa: E402

runner = CliRunner()


def ten(**corpus) -> dict:
    base = {
        "budget": {"tokens": 3000},
        "documents": {"genres": ["FAQ", "news report", "op-ed"], "ideas_per_genre": 2, "max_tokens": 200},
        "demonstrations": {"kinds": ["direct", "conflict"], "per_kind": 1, "max_tokens": 120},
    }
    base.update(corpus)
    d = spec_dict(10, **base)
    for i, p in enumerate(d["principles"]):
        p["weight"] = float(1 + i % 4)
    return d


def build(path: Path, server: FakeServer, tmp_path: Path, **kw):
    return run_build(path, provider="openai", model="fake-model", base_url=server.url,
                     cache_path=tmp_path / "cache.sqlite", quiet=True, **kw)


def test_ten_principles_plan_build_rebuild_and_edit(tmp_path):
    d = ten()
    path = write_spec(tmp_path / "spec.yaml", d)
    responder = StageResponder()
    with FakeServer(responder) as server:
        spec = load_spec(path)
        model = llm_id(spec, "openai", "fake-model", server.url)
        plan = make_plan(spec, model=model)
        # the numbers follow the quotas: ~1.25 x quota / 105 tokens per document
        quotas = compute_quotas(spec)
        for p in spec.principles:
            row = plan.principles[p.id]
            docs = records_needed(quotas[(p.id, "document")], 105)
            assert (row["ideas_calls"], row["documents"]) == (math.ceil(docs / 2), docs)
            assert row["scenario_calls"] == row["demonstrations"]  # per_kind 1
        counts = {s: e.tasks for s, e in plan.stages.items() if e.tasks}
        assert counts["document"] > counts["ideas"] > 10 and counts["reply"] == counts["judge"] == counts["scenarios"]
        r = build(path, server, tmp_path)
        # exactly the planned work
        assert r.rounds == 0 and plan.topup.tasks == 0
        assert server.completions == plan.calls == sum(counts.values())
        assert dict(responder.counts) == counts
        assert r.generated["ideas"] == r.generated["document"] == sum(p["documents"] for p in plan.principles.values())
        assert r.generated["demonstration"] == sum(p["demonstrations"] for p in plan.principles.values())
        assert r.llm["calls"] == plan.calls and r.llm["cached"] == 0
        assert r.out_dir == tmp_path / "build" / "test-spec"
        manifest = json.loads((r.out_dir / "manifest.json").read_text())
        assert (r.out_dir / "report.html").is_file()
        assert manifest["counts"]["documents"] + manifest["counts"]["demonstrations"] == len(r.kept) > 0
        assert not any("HOLDOUT" in p for p in responder.prompts)

        # unchanged: no call at all
        first = server.completions
        r2 = build(path, server, tmp_path)
        assert server.completions == first and r2.llm["calls"] == 0 and r2.llm["cached"] == first
        assert r2.up_to_date and sorted(x.id for x in r2.kept) == sorted(x.id for x in r.kept)

        # one sub-rule edited: calls only for tasks that carry its principle, as many as plan and diff said
        new = edited(d, "p3", subrules=["Sub-rule 3, now stricter."])
        write_spec(path, new)
        with Cache(tmp_path / "cache.sqlite") as cache:
            cplan = make_plan(load_spec(path), model=model, cache=cache)
            diff = diff_specs(spec, load_spec(path), model_old=model, model_new=model, cache=cache)
        assert {pid for pid, p in diff.principles.items() if p["calls"]} == {"p3", *diff_partners(diff)}
        before = len(responder.prompts)
        build(path, server, tmp_path)
        made = responder.prompts[before:]
        assert len(made) == server.completions - first == diff.calls == cplan.calls > 0
        assert all("(id: p3," in p for p in made)


class KeyRecorder(StageResponder):
    """Also records each request's identity: what the cache key hashes, as the server sees it."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __call__(self, body):
        self.calls.append(prompt_sha([body["messages"], body.get("max_tokens"), body.get("seed")]))
        return super().__call__(body)


def test_a_larger_budget_only_adds_calls(tmp_path):
    d = ten(budget={"tokens": 3000})
    path = write_spec(tmp_path / "spec.yaml", d)
    responder = KeyRecorder()
    with FakeServer(responder) as server:
        model = llm_id(load_spec(path), "openai", "fake-model", server.url)
        small = build(path, server, tmp_path)
        first = list(responder.calls)
        assert small.rounds == 0 and len(first) == make_plan(load_spec(path), model=model).calls
        d["corpus"]["budget"] = {"tokens": 12000}
        write_spec(path, d)
        with Cache(tmp_path / "cache.sqlite") as cache:
            cplan = make_plan(load_spec(path), model=model, cache=cache)
        big = build(path, server, tmp_path)
        added = responder.calls[len(first):]
        assert big.rounds == 0 and len(set(first)) == len(first)
        # every call of the smaller build is a cache hit; the new calls are new tasks, none repeated
        assert big.llm["cached"] == len(first) and big.llm["calls"] == len(added) > 0
        assert not set(added) & set(first) and len(set(added)) == len(added)
        assert len(added) == cplan.calls and sum(cplan.cached.values()) == len(first)
        assert len(big.kept) > len(small.kept)


def diff_partners(diff) -> set[str]:
    """Principles whose only changes are conflict tasks (they pair with the edited one): scenarios and below."""
    return {pid for pid, p in diff.principles.items()
            if p["status"] == "unchanged" and p["stages"] and set(p["stages"]) <= {"scenarios", "reply", "judge"}}


class MessyResponder(StageResponder):
    """What small models do: fences and prose, trailing commas, cut lists, duplicates, empty answers, rambling."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __call__(self, body):
        self.n += 1
        stage = stage_of(body)
        good = super().__call__(body)
        retry = "could not be used" in body["messages"][-1]["content"]
        if stage == "ideas":
            ideas = json.loads(good)["ideas"]
            ideas.append(dict(ideas[0]))  # a duplicate
            text = json.dumps({"ideas": ideas}, indent=1)
            if self.n % 3 == 0:
                return Reply(text[: text.rindex('"setting"')], "length")  # cut inside the last item
            return "Sure! Here you go:\n```json\n" + text.replace("}", ",}", 1) + "\n```\nEnjoy."
        if stage == "scenarios":
            return "Here are the situations you asked for.\n" + good + "\nI hope these are useful."
        if stage == "document" and self.n % 4 == 0 and not retry:
            return ""
        if stage == "judge":
            verdict = json.loads(good)["verdict"].upper()
            return f"Let me think about this carefully. The reply addresses the user.\nVerdict: {verdict}."
        return good


def test_messy_outputs_survive_and_are_counted(tmp_path):
    path = write_spec(tmp_path / "spec.yaml", spec_dict(2))
    responder = MessyResponder()
    with FakeServer(responder) as server:
        r = build(path, server, tmp_path)
    assert r.kept and r.generated["document"] and r.generated["demonstration"]
    assert r.dropped["ideas:duplicate"] > 0
    assert "parse:empty" not in r.dropped  # an empty document was retried with its error, and the retry worked
    assert sum(1 for p in responder.prompts if "could not be used" in p) > 0
    assert not any(k.startswith(("judge:", "scenarios:", "internal:")) for k in r.dropped)
    for rec in r.kept:
        assert rec.meta["task_key"] and rec.meta["model"] == "openai:fake-model"


class ShortDocs(StageResponder):
    """Documents of principle p0 come out at a third of the length their brief asks: its quota runs short."""

    def document(self, body, text):
        good = super().document(body, text)
        if "(id: p0," not in text:
            return good
        sentences = good.split(". ")
        return ". ".join(sentences[: max(2, len(sentences) // 3)]) + ".\n</document>"


def test_top_up_only_for_short_quotas(tmp_path):
    d = spec_dict(2, budget={"tokens": 3000}, rounds=2,
                  documents={"genres": ["FAQ", "news report", "op-ed"], "ideas_per_genre": 2, "max_tokens": 200},
                  demonstrations={"kinds": ["direct"], "per_kind": 1, "judge": False}, filters={"min_words": 10})
    path = write_spec(tmp_path / "spec.yaml", d)
    responder = ShortDocs()
    with FakeServer(responder) as server:
        model = llm_id(load_spec(path), "openai", "fake-model", server.url)
        pipe = Pipeline(Context.create(load_spec(path), model))
        planned = {t.key for t in drive(pipe, pipe.first_tasks(0), lambda t: ShortDocs()({"messages": list(t.messages)}))}
        r = build(path, server, tmp_path)
        calls = server.completions
        with Cache(tmp_path / "cache.sqlite") as cache:
            extra = [(stage, pid) for key, stage, pid in cache._db.execute("SELECT key, stage, principle_id FROM generations")
                     if key not in planned]
        assert 1 <= r.rounds <= 2 and extra
        # only p0's documents ran short; p1's were met in round 0
        assert {pid for s, pid in extra if s in ("ideas", "document")} == {"p0"}
        again = build(path, server, tmp_path)
        assert server.completions == calls and again.rounds == r.rounds


def test_literal_braces_in_yaml_spec_are_harmless(tmp_path):
    (tmp_path / "spec.yaml").write_text(
        "specc: 1\nname: braces\nassistant: {name: Nova}\nprinciples:\n"
        "  - id: tpl\n    title: Templates\n"
        "    statement: \"{{ assistant.name }} explains that {{ user }} and {% raw %} are template syntax.\"\n"
        "corpus:\n  budget: {tokens: 600}\n  documents: {genres: [FAQ], ideas_per_genre: 1, max_tokens: 100}\n"
        "  demonstrations: {kinds: [direct], per_kind: 1, max_tokens: 64}\n  filters: {check_language: false}\n",
        encoding="utf-8",
    )
    responder = StageResponder()
    with FakeServer(responder) as server:
        r = build(tmp_path / "spec.yaml", server, tmp_path)
    assert r.kept
    assert responder.prompts
    assert all("Nova explains that {{ user }} and {% raw %} are template syntax." in p for p in responder.prompts)


def test_cli_build_plan_diff(tmp_path):
    d = spec_dict(2, budget={"tokens": 6000})
    path = write_spec(tmp_path / "spec.yaml", d)
    cache = tmp_path / "c.sqlite"
    with FakeServer(StageResponder()) as server:
        flags = ["--provider", "openai", "--model", "fake-model", "--base-url", server.url]
        res = runner.invoke(app, ["plan", str(path), "--json", "--cache", str(tmp_path / "nope.sqlite"), *flags])
        assert res.exit_code == 2 and "no cache" in res.output
        res = runner.invoke(app, ["plan", str(path), *flags])
        assert res.exit_code == 0, res.output
        assert "Calls by stage" in res.output and "top-up (estimate)" in res.output and "every task would run" in res.output
        assert re.search(r"\d+ facets, \d+ document types", res.output)
        planned = json.loads(runner.invoke(app, ["plan", str(path), "--json", *flags]).output)
        out = tmp_path / "out"
        res = runner.invoke(app, ["build", str(path), "--out", str(out), "--cache", str(cache), "--quiet", *flags])
        assert res.exit_code == 0, res.output
        assert re.search(r"built \d+ documents and \d+ demonstrations", res.output)
        assert f"wrote {out}" in res.output and (out / "manifest.json").is_file()
        assert server.completions == planned["calls"]
        res = runner.invoke(app, ["plan", str(path), "--json", "--cache", str(cache), *flags])
        data = json.loads(res.output)
        assert data["calls"] == 0 and data["cache"]["total_cached"] == server.completions
    new = write_spec(tmp_path / "new.yaml", edited(d, "p1", title="Renamed"))
    res = runner.invoke(app, ["diff", str(path), str(new)])
    assert res.exit_code == 0 and "p1" in res.output and "edited" in res.output
    res = runner.invoke(app, ["diff", str(path), str(path), "--json"])
    assert json.loads(res.output)["calls"] == 0
    bigger = write_spec(tmp_path / "bigger.yaml", spec_dict(2, budget={"tokens": 12000}))
    res = runner.invoke(app, ["diff", str(path), str(bigger)])
    assert res.exit_code == 0 and "changed the quotas" in res.output and "corpus.budget" in res.output
    assert re.search(r"a rebuild at 12,000 tokens would make [1-9]\d* calls", res.output)


def test_diff_at_a_budget_predicts_the_build_at_that_budget(tmp_path):
    d = ten()
    path = write_spec(tmp_path / "spec.yaml", d)
    responder = StageResponder()
    with FakeServer(responder) as server:
        flags = ["--provider", "openai", "--model", "fake-model", "--base-url", server.url]
        build(path, server, tmp_path)
        first = server.completions
        new = write_spec(tmp_path / "new.yaml", edited(d, "p2", rationale="A better reason."))
        cache = ["--cache", str(tmp_path / "cache.sqlite")]
        res = runner.invoke(app, ["diff", str(path), str(new), "--budget", "30000", "--json", *cache, *flags])
        assert res.exit_code == 0, res.output
        predicted = json.loads(res.output)
        assert predicted["budget_tokens"] == 30000 and predicted["calls"] > 0
        with Cache(tmp_path / "cache.sqlite") as c:
            before = c.keys()
        r = build(new, server, tmp_path, budget=30000)
        made = server.completions - first
        # every call diff predicted, and no other, ran in the build's first round; a top-up round
        # (curation's losses, or the grain of record lengths) may add calls of its own after it
        spec30 = with_overrides(load_spec(new), budget=30000)
        with Cache(tmp_path / "cache.sqlite") as c:
            round0 = make_plan(spec30, model=llm_id(spec30, "openai", "fake-model", server.url), cache=c).walk.keys
            topup = c.keys() - before - round0
        assert len(round0 - before) == predicted["calls"] and made == predicted["calls"] + len(topup)
        assert r.rounds <= 1 and len(topup) <= 0.15 * made
        # the model override reaches diff too: another model shares nothing with the cache
        other = json.loads(runner.invoke(app, ["diff", str(path), str(new), "--json", "--budget", "30000", *cache,
                                               *flags[:2], "--model", "other-model", *flags[4:]]).output)
        assert other["calls"] > server.completions - first


def test_cli_exit_codes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("specc: 1\nname: x\n", encoding="utf-8")
    assert runner.invoke(app, ["build", str(bad)]).exit_code == 2
    path = write_spec(tmp_path / "spec.yaml", spec_dict(1))
    res = runner.invoke(app, ["build", str(path), "--provider", "openai", "--model", "fake-model",
                              "--base-url", "http://127.0.0.1:9/v1", "--quiet"])
    assert res.exit_code == 1 and "error:" in res.output


def test_cost_cap_stops_and_rerun_resumes(tmp_path):
    d = spec_dict(2)
    d["generator"] = {"prices": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}, "concurrency": 1}
    path = write_spec(tmp_path / "spec.yaml", d)
    with FakeServer(StageResponder()) as server:
        with pytest.raises(CostCapError) as e:
            build(path, server, tmp_path, max_usd=0.05)
        assert "max_usd" in str(e.value)
        first = server.completions
        r = build(path, server, tmp_path)
        assert r.llm["cached"] >= first and r.kept


def test_push_without_repo_is_an_input_error(tmp_path):
    path = write_spec(tmp_path / "spec.yaml", spec_dict(1))
    res = runner.invoke(app, ["build", str(path), "--push", "--quiet"])
    assert res.exit_code == 2 and "hub.repo" in res.output



def test_a_gap_smaller_than_a_quarter_record_is_not_worth_a_round():
    from specc.build import topup_gaps, worth_topping_up
    from specc.plan.sizing import expected_document_tokens

    spec = load_spec_dict(spec_dict(2, documents={"max_tokens": 400}))
    gaps = topup_gaps(Context.create(spec, "fake:m"))
    assert gaps["document"] == int(0.25 * expected_document_tokens(spec)) > 0 and gaps["demonstration"] > 0
    short = {("p0", "document"): gaps["document"] - 1, ("p1", "document"): gaps["document"],
             ("p0", "demonstration"): 3 * gaps["demonstration"], ("p1", "demonstration"): 0}
    assert worth_topping_up(short, gaps) == {("p1", "document"): gaps["document"],
                                             ("p0", "demonstration"): 3 * gaps["demonstration"]}
    # ... unless the gap is more than a tenth of a small quota: budget selection never calls that met
    small = {("p0", "document"): 5 * gaps["document"]}
    assert ("p0", "document") in worth_topping_up(short, gaps, small)
    assert worth_topping_up(short, gaps, {("p0", "document"): 100 * gaps["document"]}) == worth_topping_up(short, gaps)


def load_spec_dict(d: dict):
    from specc.spec.schema import Spec

    return Spec.model_validate(d)
