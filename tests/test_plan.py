"""`specc plan` and `specc diff` numbers: the stage code run against a stub model (and the cache), no LLM."""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from responder import StageResponder  # noqa: E402
from stagekit import drive, edited, make_spec, principle, spec_dict  # noqa: E402

from specc.generate.base import Generation  # noqa: E402
from specc.generate.cache import Cache  # noqa: E402
from specc.plan import diff_specs, make_plan  # noqa: E402
from specc.plan.quotas import compute_quotas  # noqa: E402
from specc.plan.sizing import expected_document_tokens, records_needed  # noqa: E402
from specc.spec.schema import DEFAULT_GENRES, Spec  # noqa: E402
from specc.stages import Context, Pipeline  # noqa: E402

DEEP = {"budget": {"tokens": 5000}, "documents": {"genres": ["FAQ"], "ideas_per_genre": 1, "max_tokens": 200}}


def driven(spec: Spec, model: str = "fake:m") -> tuple[Pipeline, Counter]:
    """A build's task graph with every answer well formed (the fake server's responder): distinct keys per stage."""
    responder = StageResponder()
    pipe = Pipeline(Context.create(spec, model))
    tasks = drive(pipe, pipe.first_tasks(0), lambda t: responder({"messages": list(t.messages)}))
    return pipe, Counter(s for s, _ in {(t.stage, t.key) for t in tasks})


def test_plan_counts_what_the_stage_code_does():
    d = spec_dict(3, **DEEP)
    d["generator"] = {"prices": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    for p, w in zip(d["principles"], (1.0, 2.0, 3.0)):
        p["weight"] = w
    spec = Spec.model_validate(d)
    plan = make_plan(spec, model="fake:m")
    pipe, stages = driven(spec)
    assert {s: e.tasks for s, e in plan.stages.items() if e.tasks} == dict(stages)
    assert set(stages) == {"facets", "doctypes", "ideas", "document", "scenarios", "reply", "judge"}
    quotas = compute_quotas(spec)
    for p in spec.principles:
        row, st = plan.principles[p.id], pipe.states[p.id]
        assert (row["facets"], row["doc_types"]) == (len(st.facets), len(st.types_used))
        # 1.25 x the quota in documents of ~105 tokens (max_tokens 200 x 0.7 words x 0.6 mean length x 1.25)
        want = math.ceil(1.25 * quotas[(p.id, "document")] / 105)
        assert expected_document_tokens(spec) == 105
        assert row["documents"] == row["wanted_documents"] == want
        assert row["expected_document_tokens"] >= quotas[(p.id, "document")]
    rows = list(plan.principles.values())
    assert rows[0]["documents"] < rows[1]["documents"] < rows[2]["documents"]  # heavier principles get more
    assert plan.cost_usd == (plan.input_tokens * 1.0 + plan.output_tokens * 2.0) / 1e6 > 0
    data = plan.to_dict()
    assert data["facets"] == sum(r["facets"] for r in rows) and data["topup_estimate"]["tasks"] == 0
    assert data["cache"] is None and any("stub model" in n for n in data["notes"])


def test_plan_without_judge_and_with_spec_context():
    plan = make_plan(make_spec(2, demonstrations={"judge": False}, context="spec"), model="fake:m")
    assert "judge" not in plan.stages
    assert any("regenerates everything" in n for n in plan.notes)


def _fill(cache: Cache, ctx: Context, stages: set[str]) -> None:
    """Store well-formed answers for the tasks of ``stages`` reachable through cached parents."""
    responder = StageResponder()
    pipe = Pipeline(ctx)
    stack = pipe.first_tasks(0)
    while stack:
        t = stack.pop()
        if t.stage not in stages:
            continue
        gen = Generation(responder({"messages": list(t.messages)}), "stop", 1, 1, "m")
        cache.put(t.key, t, gen)
        stack.extend(pipe.on_result(t, gen))


def test_plan_walks_the_cache(tmp_path):
    spec = make_spec(2, **DEEP)
    ctx = Context.create(spec, "fake:m")
    with Cache(tmp_path / "c.sqlite") as cache:
        empty = make_plan(spec, model="fake:m", cache=cache)
        assert empty.to_dict()["cache"]["total_cached"] == 0
        _fill(cache, ctx, {"facets", "doctypes", "ideas", "scenarios"})
        part = make_plan(spec, model="fake:m", cache=cache)
        assert {s: part.cached[s] for s in ("facets", "ideas", "scenarios")} == {
            s: empty.stages[s].tasks for s in ("facets", "ideas", "scenarios")}
        assert part.stages["ideas"].tasks == 0 and part.stages["document"].tasks == empty.stages["document"].tasks
        _fill(cache, ctx, {"facets", "doctypes", "ideas", "scenarios", "document", "reply", "judge"})
        full = make_plan(spec, model="fake:m", cache=cache)
        assert full.calls == 0 and full.records_from_cache["document"] == sum(
            r["documents"] for r in empty.principles.values())
        # another model shares nothing
        assert make_plan(spec, model="fake:other", cache=cache).to_dict()["cache"]["total_cached"] == 0


def sized(spec: Spec):
    return Context.create(spec, "fake:m").sizing()


def test_sizing_from_10k_to_100m_tokens():
    d = spec_dict(3, documents={"max_tokens": 1500, "ideas_per_genre": 4},
                  demonstrations={"kinds": ["direct", "edge_case", "adversarial", "conflict"], "per_kind": 4,
                                  "max_tokens": 600})
    d["corpus"]["documents"].pop("genres")  # the default catalogue of 22 genres
    doc = None
    for budget in (10_000, 1_000_000, 100_000_000):
        spec = Spec.model_validate({**d, "corpus": {**d["corpus"], "budget": {"tokens": budget}}})
        quotas, s = compute_quotas(spec), sized(spec)
        doc = expected_document_tokens(spec)
        for p in spec.principles:
            x = s[p.id]
            assert x.documents == records_needed(quotas[(p.id, "document")], doc) == math.ceil(
                1.25 * quotas[(p.id, "document")] / doc)
            assert x.ideas_calls == math.ceil(x.documents / 4) and x.scenario_calls == math.ceil(x.demonstrations / 4)
            assert x.facets == (max(x.given_facets, min(math.ceil(math.sqrt(x.ideas_calls)), x.given_facets + 24)))
        if budget == 10_000:
            assert all(x.generated_facets == 0 and x.facet_calls == 0 for x in s.values())
        if budget == 100_000_000:
            assert all(x.generated_facets == 24 for x in s.values())  # capped by corpus.facets.max
    # 10k and 1M walked in full: every wanted record is planned, with facets and document types to match
    for budget, facets, types in ((10_000, False, False), (1_000_000, True, False)):
        spec = Spec.model_validate({**d, "corpus": {**d["corpus"], "budget": {"tokens": budget}}})
        t0 = time.perf_counter()
        plan = make_plan(spec, model="fake:m")
        assert time.perf_counter() - t0 < 30
        for pid, row in plan.principles.items():
            assert row["documents"] == row["wanted_documents"] and row["demonstrations"] == row["wanted_demonstrations"]
            assert row["expected_document_tokens"] >= row["quota_document_tokens"]
            assert (row["facets_generated"] > 0) == facets and (row["doc_types"] > len(DEFAULT_GENRES)) == types
        assert (plan.stages["facets"].tasks > 0) == facets and plan.topup.tasks == 0
    # 100M, one principle, long documents: the catalogue runs out, so facets get document types of their own
    spec = Spec.model_validate({**d, "principles": d["principles"][:1],
                                "corpus": {**d["corpus"], "budget": {"tokens": 100_000_000},
                                           "mix": {"documents": 1.0, "demonstrations": 0.0},
                                           "documents": {"max_tokens": 60_000, "ideas_per_genre": 4}}})
    t0 = time.perf_counter()
    plan = make_plan(spec, model="fake:m")
    assert time.perf_counter() - t0 < 60
    row, s = plan.principles["p0"], sized(spec)["p0"]
    assert row["documents"] == row["wanted_documents"] == s.documents > 3000
    assert row["facets"] == s.given_facets + 24 and plan.stages["doctypes"].tasks > 0
    assert row["doc_types"] > len(DEFAULT_GENRES)


def test_doubling_the_budget_keeps_most_tasks():
    d = spec_dict(4, documents={"genres": list(DEFAULT_GENRES[:8]), "ideas_per_genre": 3},
                  demonstrations={"kinds": ["direct", "edge_case", "adversarial", "conflict"], "per_kind": 2})
    for p, w in zip(d["principles"], (1.0, 1.5, 2.0, 4.0)):
        p["weight"] = w
    specs = [Spec.model_validate({**d, "corpus": {**d["corpus"], "budget": {"tokens": 400 * 2**i}}}) for i in range(7)]
    keys = [make_plan(s, model="fake:m").walk.keys for s in specs]
    for small, big in zip(keys, keys[1:]):
        assert len(big) > len(small)
        # prompts never depend on the budget: a slot a larger budget keeps has the same key
        assert len(small & big) >= 0.7 * len(small)


def test_rotation_covers_the_genre_and_kind_catalogues():
    d = spec_dict(10, budget={"tokens": 40_000}, documents={"genres": list(DEFAULT_GENRES), "ideas_per_genre": 4,
                                                             "max_tokens": 200})
    pipe, _ = driven(Spec.model_validate(d))
    used = [st.types_used for st in pipe.states.values()]
    assert all(len(u) >= 3 for u in used)
    assert set().union(*used) == set(DEFAULT_GENRES)


def test_plan_notes_tiny_quotas():
    tiny = make_plan(make_spec(3, budget={"tokens": 60}), model="fake:m")
    assert all((r["documents"], r["demonstrations"], r["ideas_calls"], r["scenario_calls"]) == (1, 1, 1, 1)
               for r in tiny.principles.values())
    assert any("under half a typical demonstration" in n for n in tiny.notes)
    only_demos = make_plan(make_spec(2, mix={"documents": 0.0, "demonstrations": 1.0}), model="fake:m")
    assert only_demos.stages["ideas"].tasks == only_demos.stages["document"].tasks == 0
    assert only_demos.stages["scenarios"].tasks > 0


# ---------------------------------------------------------------- diff


def test_diff_edit_add_remove():
    d = spec_dict(3, budget={"tokens": 3000}, demonstrations={"kinds": ["direct", "edge_case"]})
    old = Spec.model_validate(d)
    assert diff_specs(old, old).calls == 0
    new = edited(d, "p0", statement="Nova changed its mind.")
    new["principles"] = new["principles"][:2] + [principle(7)]
    diff = diff_specs(old, Spec.model_validate(new))
    status = {pid: p["status"] for pid, p in diff.principles.items()}
    assert status == {"p0": "edited", "p1": "unchanged", "p2": "removed", "p7": "added"}
    _, p0 = driven(Spec.model_validate(edited(spec_dict(1, budget={"tokens": 1000},
                                                           demonstrations={"kinds": ["direct", "edge_case"]}),
                                                "p0", statement="Nova changed its mind.")))
    assert diff.principles["p0"]["calls"] > 0 and diff.principles["p7"]["calls"] > 0
    assert diff.principles["p1"]["calls"] == 0 and diff.calls == diff.principles["p0"]["calls"] + diff.principles["p7"]["calls"]
    assert diff.principles["p0"]["stages"] == ["ideas", "document", "scenarios", "reply", "judge"]


def test_diff_template_genre_and_curation_changes(tmp_path):
    d = spec_dict(2, budget={"tokens": 3000}, demonstrations={"kinds": ["direct"]})
    old = Spec.model_validate(d)
    (tmp_path / "judge.j2").write_text("{% block user %}# specc:judge\n{{ reply }}{% endblock %}", encoding="utf-8")
    new = Spec.model_validate({**d, "templates": {"judge": "judge.j2"}})
    new._source = tmp_path / "spec.yaml"
    diff = diff_specs(old, new)
    assert set(diff.templates) == {"judge"} and diff.calls_by_stage == {"judge": diff.calls}
    plan = make_plan(old, model="fake:m")
    assert diff.calls == plan.stages["judge"].tasks
    diff = diff_specs(old, Spec.model_validate(spec_dict(2, budget={"tokens": 3000}, demonstrations={"kinds": ["direct"]},
                                                         dedup={"threshold": 0.9})))
    assert diff.curation_only == ["corpus.dedup"] and diff.resized == [] and diff.calls == 0


def test_diff_of_a_budget_change_counts_only_the_added_tasks():
    d = spec_dict(3, budget={"tokens": 3000}, documents={"genres": list(DEFAULT_GENRES[:6]), "ideas_per_genre": 3})
    small, big = Spec.model_validate(d), Spec.model_validate({**d, "corpus": {**d["corpus"], "budget": {"tokens": 6000}}})
    grow = diff_specs(small, big)
    assert grow.resized == ["corpus.budget"] and grow.curation_only == []
    assert grow.calls == len(make_plan(big, model="fake:m").walk.keys - make_plan(small, model="fake:m").walk.keys) > 0
    assert diff_specs(big, small).calls == 0  # a smaller budget only leaves cached work unused


def test_diff_with_spec_context_regenerates_everything():
    d = spec_dict(3, context="spec", demonstrations={"kinds": ["direct"]})
    diff = diff_specs(Spec.model_validate(d), Spec.model_validate(edited(d, "p2", rationale="new")))
    assert all(p["calls"] > 0 for p in diff.principles.values()) and diff.context == "spec"
