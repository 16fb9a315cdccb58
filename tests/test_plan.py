"""`specc plan` numbers, the cache walk, `specc diff` and top-up planning, all without an LLM."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from responder import StageResponder  # noqa: E402
from stagekit import FULL, drive, edited, full_spec, make_spec, principle, spec_dict  # noqa: E402

from specc.generate.cache import Cache  # noqa: E402
from specc.generate.base import Generation  # noqa: E402
from specc.plan import diff_specs, make_plan, plan_topup  # noqa: E402
from specc.quotas import compute_quotas  # noqa: E402
from specc.spec.schema import DEFAULT_GENRES, DEMO_KINDS, Spec  # noqa: E402
from specc.stages import Context, Pipeline, expected_demonstration_tokens  # noqa: E402
from specc.tokens import count_messages, get_tokenizer  # noqa: E402


def test_plan_counts_tokens_and_cost():
    d = spec_dict(3, budget={"tokens": 3000}, documents={"genres": list(DEFAULT_GENRES[:6]), "ideas_per_genre": 3})
    d["generator"] = {"prices": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    for p, w in zip(d["principles"], (1.0, 2.0, 3.0)):
        p["weight"] = w
    spec = Spec.model_validate(d)
    plan = make_plan(spec, model="fake:m")
    ctx = Context.create(spec, "fake:m")
    quotas = compute_quotas(spec)
    demo_tokens = sum(expected_demonstration_tokens(ctx, k) for k in ("direct", "multi_turn", "conflict")) / 3
    want = {}
    for p in spec.principles:
        # a kept document is ~ max_tokens 200 x fill 0.75 x 0.8 (its plan part dropped) = 120 tokens
        docs = min(math.ceil(1.25 * quotas[(p.id, "document")] / 120), 6 * 3)
        demos = min(math.ceil(1.25 * quotas[(p.id, "demonstration")] / round(demo_tokens)), 3 * 2)
        want[p.id] = (math.ceil(docs / 3), docs, math.ceil(demos / 2), demos)
        row = plan.principles[p.id]
        assert (row["ideas_tasks"], row["documents"], row["scenarios_tasks"], row["demonstrations"]) == want[p.id]
        assert row["expected_document_tokens"] == docs * 120 and row["quota_document_tokens"] == quotas[(p.id, "document")]
    assert want == {"p0": (2, 5, 1, 1), "p1": (3, 9, 1, 2), "p2": (5, 13, 2, 3)}  # heavier principles get more
    st = plan.stages
    ideas, documents, scenarios, demos = (sum(w[i] for w in want.values()) for i in range(4))
    assert (st["ideas"].tasks, st["document"].tasks) == (ideas, documents)
    assert (st["scenarios"].tasks, st["reply"].tasks, st["judge"].tasks) == (scenarios, demos, demos)
    tok = get_tokenizer()
    exact = sum(count_messages(tok, list(t.messages)) for t in plan.tasks if t.stage == "ideas")
    assert st["ideas"].input_tokens == exact
    assert plan.calls == ideas + documents + scenarios + 2 * demos
    assert plan.cost_usd == (plan.input_tokens * 1.0 + plan.output_tokens * 2.0) / 1e6 > 0
    data = plan.to_dict()
    assert data["stages"]["ideas"]["exact"] and not data["stages"]["reply"]["exact"]
    assert data["cache"] is None and any("estimate" in n or "assume" in n for n in data["notes"])
    assert not any("dropped by budget selection" in n or "fit in the slots" in n for n in data["notes"])


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
    spec = full_spec(2)
    ctx = Context.create(spec, "fake:m")
    with Cache(tmp_path / "c.sqlite") as cache:
        assert make_plan(spec, model="fake:m", cache=cache).cache.to_dict()["total_cached"] == 0
        _fill(cache, ctx, {"ideas", "scenarios"})
        c = make_plan(spec, model="fake:m", cache=cache).cache
        assert c.cached == {"ideas": 4, "scenarios": 6}
        # children of cached parents have exact keys; below uncached tasks it is an estimate
        assert c.to_run == {"document": 8, "reply": 12} and c.to_run_estimated == {"judge": 12}
        _fill(cache, ctx, {"ideas", "scenarios", "document", "reply", "judge"})
        c = make_plan(spec, model="fake:m", cache=cache).cache.to_dict()
        assert c["total_to_run"] == 0 and c["records_from_cache"] == {"document": 8, "demonstration": 12}
        # another model shares nothing
        assert make_plan(spec, model="fake:other", cache=cache).cache.to_dict()["total_cached"] == 0


def test_diff_edit_add_remove():
    d = spec_dict(3, budget=FULL, demonstrations={"kinds": ["direct", "edge_case"]})
    old = Spec.model_validate(d)
    assert diff_specs(old, old).calls == 0
    new = edited(d, "p0", statement="Nova changed its mind.")
    new["principles"] = new["principles"][:2] + [principle(7)]
    diff = diff_specs(old, Spec.model_validate(new))
    status = {pid: p["status"] for pid, p in diff.principles.items()}
    assert status == {"p0": "edited", "p1": "unchanged", "p2": "removed", "p7": "added"}
    per = 2 * (1 + 2) + 2 * (1 + 2 + 2)  # ideas + documents, scenarios + replies + judges
    assert diff.principles["p0"]["calls"] == diff.principles["p7"]["calls"] == per
    assert diff.principles["p1"]["calls"] == 0 and diff.calls == 2 * per
    assert diff.principles["p0"]["stages"] == ["ideas", "document", "scenarios", "reply", "judge"]


def test_diff_template_genre_and_curation_changes(tmp_path):
    d = spec_dict(2, budget=FULL, demonstrations={"kinds": ["direct"]})
    old = Spec.model_validate(d)
    (tmp_path / "judge.j2").write_text("{% block user %}# specc:judge\n{{ reply }}{% endblock %}", encoding="utf-8")
    d2 = {**d, "templates": {"judge": "judge.j2"}}
    new = Spec.model_validate(d2)
    new._source = tmp_path / "spec.yaml"
    diff = diff_specs(old, new)
    assert set(diff.templates) == {"judge"}
    assert all(p["stages"] == ["judge"] and p["calls"] == 2 for p in diff.principles.values())
    d3 = spec_dict(2, budget=FULL, demonstrations={"kinds": ["direct"]}, dedup={"threshold": 0.9},
                   documents={"genres": ["FAQ", "news report", "op-ed"]})
    diff = diff_specs(old, Spec.model_validate(d3))
    assert diff.curation_only == ["corpus.dedup"] and diff.resized == []
    assert all(p["changes"] == ["ideas[op-ed]"] and p["calls"] == 1 + 2 for p in diff.principles.values())


def all_keys(spec: Spec) -> set[str]:
    """Every task key a build of ``spec`` makes when each answer is well formed."""
    responder = StageResponder()
    pipe = Pipeline(Context.create(spec, "fake:m"))
    return {t.key for t in drive(pipe, pipe.first_tasks(0), lambda t: responder({"messages": list(t.messages)}))}


def test_diff_of_a_budget_change_counts_only_the_added_tasks():
    d = spec_dict(3, budget={"tokens": 3000}, documents={"genres": list(DEFAULT_GENRES[:6]), "ideas_per_genre": 3})
    small, big = Spec.model_validate(d), Spec.model_validate({**d, "corpus": {**d["corpus"], "budget": {"tokens": 6000}}})
    grow = diff_specs(small, big)
    assert grow.resized == ["corpus.budget"] and grow.curation_only == []
    assert grow.calls == len(all_keys(big) - all_keys(small)) > 0
    assert diff_specs(big, small).calls == 0  # a smaller budget only leaves cached work unused


def test_diff_with_spec_context_regenerates_everything():
    d = spec_dict(3, context="spec", demonstrations={"kinds": ["direct"]})
    diff = diff_specs(Spec.model_validate(d), Spec.model_validate(edited(d, "p2", rationale="new")))
    assert all(p["calls"] > 0 for p in diff.principles.values()) and diff.context == "spec"


def test_plan_topup_targets_only_short_quotas():
    spec = make_spec(3)
    tasks = plan_topup(spec, {("p1", "document"): 400, ("p2", "demonstration"): 300, ("p0", "document"): 10},
                       1, model="fake:m")
    assert {(t.stage, t.principle_id) for t in tasks} == {("ideas", "p1"), ("scenarios", "p2")}
    assert all(t.meta["round"] == 1 and "extra round 1" in t.messages[-1]["content"] for t in tasks)
    first = {t.key for t in Pipeline(Context.create(spec, "fake:m")).first_tasks(0)}
    assert not first & {t.key for t in tasks}
    again = plan_topup(spec, {("p1", "document"): 400, ("p2", "demonstration"): 300}, 1, model="fake:m")
    assert [t.key for t in again] == [t.key for t in tasks]
    assert plan_topup(spec, {("p1", "document"): 400}, 2, model="fake:m")[0].key not in {t.key for t in tasks}


def sized(spec: Spec):
    return Context.create(spec, "fake:m").sizing()


def slots_grow(small, big) -> bool:
    """Every (item, count) slot of ``small`` is at the same place in ``big`` with at least as many records."""
    return len(big) >= len(small) and all(b[0] == s[0] and b[1] >= s[1] for s, b in zip(small, big))


def test_sizing_grows_with_the_budget_and_doubling_keeps_every_task():
    d = spec_dict(4, documents={"genres": list(DEFAULT_GENRES[:8]), "ideas_per_genre": 3},
                  demonstrations={"kinds": ["direct", "edge_case", "adversarial", "conflict"], "per_kind": 2})
    for p, w in zip(d["principles"], (1.0, 1.5, 2.0, 4.0)):
        p["weight"] = w
    budgets = [400 * 2**i for i in range(8)]
    specs = [Spec.model_validate({**d, "corpus": {**d["corpus"], "budget": {"tokens": b}}}) for b in budgets]
    sizes = [sized(s) for s in specs]
    for small, big in zip(sizes, sizes[1:]):
        for pid in small:
            assert big[pid].wanted_documents >= small[pid].wanted_documents
            assert big[pid].wanted_demonstrations >= small[pid].wanted_demonstrations
            assert slots_grow(small[pid].genres, big[pid].genres) and slots_grow(small[pid].kinds, big[pid].kinds)
    assert sizes[0]["p0"].documents < sizes[-1]["p0"].documents
    # the whole DAG of a build is kept (cache hits) when the budget doubles; only tasks are added
    for small, big in zip(specs[:4], specs[1:5]):
        a, b = all_keys(small), all_keys(big)
        assert a < b
    # budget-independent prompts: the same slot has the same key at any budget
    first = {(t.principle_id, t.meta.get("genre") or t.meta["kind"]): t.key
             for s in (specs[1], specs[5]) for t in Pipeline(Context.create(s, "fake:m")).first_tasks(0)}
    small_first = Pipeline(Context.create(specs[1], "fake:m")).first_tasks(0)
    assert all(first[(t.principle_id, t.meta.get("genre") or t.meta["kind"])] == t.key for t in small_first)


def test_sizing_is_proportional_to_weights_and_the_quota():
    d = spec_dict(3, budget={"tokens": 40_000}, documents={"genres": list(DEFAULT_GENRES), "ideas_per_genre": 10},
                  demonstrations={"kinds": ["direct", "edge_case", "adversarial", "conflict"], "per_kind": 20})
    for p, w in zip(d["principles"], (1.0, 2.0, 4.0)):
        p["weight"] = w
    s = sized(Spec.model_validate(d))
    docs = [s[f"p{i}"].documents for i in range(3)]
    demos = [s[f"p{i}"].demonstrations for i in range(3)]
    # 32,000 document tokens x 1.25 / 120 per document over weights 1:2:4 -> about 48, 95, 191
    assert abs(docs[0] - 47.6) < 1 and abs(docs[1] - 2 * docs[0]) <= 2 and abs(docs[2] - 4 * docs[0]) <= 4
    assert abs(demos[1] - 2 * demos[0]) <= 2 and abs(demos[2] - 4 * demos[0]) <= 4 and demos[0] >= 1
    assert [len(s[f"p{i}"].genres) for i in range(3)] == [math.ceil(n / 10) for n in docs]
    assert all(x.documents == x.wanted_documents and x.demonstrations == x.wanted_demonstrations for x in s.values())


def test_sizing_respects_mix_zero_and_gives_at_least_one():
    only_docs = make_spec(2, mix={"documents": 1.0, "demonstrations": 0.0})
    tasks = Pipeline(Context.create(only_docs, "fake:m")).first_tasks(0)
    assert {t.stage for t in tasks} == {"ideas"}
    only_demos = make_spec(2, mix={"documents": 0.0, "demonstrations": 1.0})
    plan = make_plan(only_demos, model="fake:m")
    assert plan.stages["ideas"].tasks == plan.stages["document"].tasks == 0 and plan.stages["scenarios"].tasks > 0
    tiny = make_plan(make_spec(3, budget={"tokens": 60}), model="fake:m")
    assert all((r["documents"], r["demonstrations"], r["ideas_tasks"], r["scenarios_tasks"]) == (1, 1, 1, 1)
               for r in tiny.principles.values())
    assert any("under half a typical demonstration" in n for n in tiny.notes)


def test_rotation_covers_the_genre_and_kind_catalogues():
    d = spec_dict(10, budget={"tokens": 40_000}, documents={"genres": list(DEFAULT_GENRES), "ideas_per_genre": 4,
                                                             "max_tokens": 200})
    s = sized(Spec.model_validate(d))
    assert all(len(x.genres) >= 3 for x in s.values())
    starts = [x.genres[0][0] for x in s.values()]
    assert len(set(starts)) == 10  # every principle starts somewhere else
    assert {g for x in s.values() for g, _ in x.genres} == set(DEFAULT_GENRES)
    # one kind each: six principles still use all six kinds between them
    d = spec_dict(6, budget={"tokens": 1200}, demonstrations={"kinds": list(DEMO_KINDS), "per_kind": 2})
    s = sized(Spec.model_validate(d))
    assert [len(x.kinds) for x in s.values()] == [1] * 6
    assert {x.kinds[0][0] for x in s.values()} == set(DEMO_KINDS)
    # appending a principle moves no other principle's rotation: its slots only shrink to a prefix
    more = sized(Spec.model_validate({**d, "principles": d["principles"] + [principle(6)]}))
    assert all(slots_grow(more[pid].kinds, s[pid].kinds) for pid in s)


def test_capped_slots_are_noted():
    plan = make_plan(full_spec(2), model="fake:m")
    assert all(r["documents"] == 4 and r["wanted_documents"] > 4 for r in plan.principles.values())
    assert any("add genres or raise ideas_per_genre" in n for n in plan.notes)
    assert any("add kinds or raise per_kind" in n for n in plan.notes)


def test_plan_topup_continues_the_rotation_past_round_zero():
    spec = make_spec(2, budget={"tokens": 1200}, documents={"genres": list(DEFAULT_GENRES[:6]), "ideas_per_genre": 2},
                     demonstrations={"kinds": ["direct", "indirect", "edge_case", "adversarial"], "per_kind": 1})
    ctx = Context.create(spec, "fake:m")
    planned = ctx.sizing()["p1"]
    tasks = plan_topup(spec, {("p1", "document"): 300, ("p1", "demonstration"): 100}, 1, ctx=ctx)
    genres = [t.meta["genre"] for t in tasks if t.stage == "ideas"]
    kinds = [t.meta["kind"] for t in tasks if t.stage == "scenarios"]
    catalogue, used = list(spec.corpus.documents.genres), [g for g, _ in planned.genres]
    assert genres and genres[0] == catalogue[(catalogue.index(used[-1]) + 1) % len(catalogue)]
    assert not set(genres) & set(used) and kinds and not set(kinds) & {k for k, _ in planned.kinds}
    kinds_all = list(spec.corpus.demonstrations.kinds)
    assert kinds[0] == kinds_all[(kinds_all.index(planned.kinds[-1][0]) + 1) % len(kinds_all)]
    # documents wanted: 1.5 x 300 missing / 120 per document = 4, two per ideas call
    assert [t.meta["k"] for t in tasks if t.stage == "ideas"] == [2, 2]
