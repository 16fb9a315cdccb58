"""`specc plan` numbers, the cache walk, `specc diff` and top-up planning, all without an LLM."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from responder import StageResponder  # noqa: E402
from stagekit import edited, make_spec, principle, spec_dict  # noqa: E402

from specc.cache import Cache  # noqa: E402
from specc.llm.base import Generation  # noqa: E402
from specc.plan import diff_specs, make_plan, plan_topup  # noqa: E402
from specc.spec.schema import Spec  # noqa: E402
from specc.stages import Context, Pipeline  # noqa: E402
from specc.tokens import count_messages, get_tokenizer  # noqa: E402


def test_plan_counts_tokens_and_cost():
    d = spec_dict(3)
    d["generator"] = {"prices": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    spec = Spec.model_validate(d)
    plan = make_plan(spec, model="fake:m")
    st = plan.stages
    assert (st["ideas"].tasks, st["document"].tasks) == (6, 12)
    assert (st["scenarios"].tasks, st["reply"].tasks, st["judge"].tasks) == (9, 18, 18)
    tok = get_tokenizer()
    exact = sum(count_messages(tok, list(t.messages)) for t in plan.tasks if t.stage == "ideas")
    assert st["ideas"].input_tokens == exact
    assert plan.calls == 63 and plan.cost_usd == (plan.input_tokens * 1.0 + plan.output_tokens * 2.0) / 1e6 > 0
    assert plan.principles["p0"] == {**plan.principles["p0"], "ideas_tasks": 2, "documents": 4,
                                     "scenarios_tasks": 3, "demonstrations": 6}
    data = plan.to_dict()
    assert data["stages"]["ideas"]["exact"] and not data["stages"]["reply"]["exact"]
    assert data["cache"] is None and any("estimate" in n or "assume" in n for n in data["notes"])


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
    spec = make_spec(2)
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
    d = spec_dict(3, demonstrations={"kinds": ["direct", "edge_case"]})
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
    d = spec_dict(2, demonstrations={"kinds": ["direct"]})
    old = Spec.model_validate(d)
    (tmp_path / "judge.j2").write_text("{% block user %}# specc:judge\n{{ reply }}{% endblock %}", encoding="utf-8")
    d2 = {**d, "templates": {"judge": "judge.j2"}}
    new = Spec.model_validate(d2)
    new._source = tmp_path / "spec.yaml"
    diff = diff_specs(old, new)
    assert set(diff.templates) == {"judge"}
    assert all(p["stages"] == ["judge"] and p["calls"] == 2 for p in diff.principles.values())
    d3 = spec_dict(2, demonstrations={"kinds": ["direct"]}, budget={"tokens": 99999},
                   documents={"genres": ["FAQ", "news report", "op-ed"]})
    diff = diff_specs(old, Spec.model_validate(d3))
    assert diff.curation_only == ["corpus.budget"]
    assert all(p["changes"] == ["ideas[op-ed]"] and p["calls"] == 1 + 2 for p in diff.principles.values())


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
