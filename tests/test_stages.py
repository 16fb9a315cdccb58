"""Task expansion and result handling, driven in-process (the engine's part is tested against a server elsewhere)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from responder import StageResponder  # noqa: E402
from stagekit import drive, edited, make_spec, spec_dict  # noqa: E402

from specc.spec.schema import Spec  # noqa: E402
from specc.stages import Context, Pipeline, partner_of  # noqa: E402
from specc.stages.scenarios import n_system_for  # noqa: E402

PROVENANCE = ("principle_id", "model", "template_hash", "task_key", "spec_version", "finish_reason", "round")
# Two principles with one sub-rule, one example and a single genre: enough documents that each needs
# generated facets (√calls > its three given ones) and document types (calls per facet > one genre).
DEEP = {"budget": {"tokens": 5000}, "documents": {"genres": ["FAQ"], "ideas_per_genre": 1, "max_tokens": 200}}


def run(spec, respond=None, model="fake:m", **kw):
    pipe = Pipeline(Context.create(spec, model))
    responder = StageResponder()
    respond = respond or (lambda t: responder({"messages": list(t.messages)}))
    tasks = drive(pipe, pipe.first_tasks(0), respond, **kw)
    return pipe, tasks


def by_stage(tasks):
    out = {}
    for t in tasks:
        out.setdefault(t.stage, []).append(t)
    return out


def test_expansion_follows_the_sizing_and_every_idea_becomes_one_document():
    spec = make_spec(3, budget={"tokens": 3000})
    pipe, tasks = run(spec)
    sizing = pipe.ctx.sizing()
    for p in spec.principles:
        s, mine = sizing[p.id], by_stage([t for t in tasks if t.principle_id == p.id])
        assert len(mine["ideas"]) == s.ideas_calls and len(mine["document"]) == s.documents
        assert len(mine["scenarios"]) == s.scenario_calls
        assert len(mine["reply"]) == len(mine["judge"]) == s.demonstrations
        assert "facets" not in mine  # the given facets are enough at this size
    assert not pipe.drops
    kinds = {(r.kind, r.demo_kind) for r in pipe.records}
    assert {k for k, _ in kinds} == {"document", "demonstration"}
    # no two documents share an idea, and each knows the ideas task it came from
    docs = [t for t in tasks if t.stage == "document"]
    assert len({(t.principle_id, t.input.idea.normalised_title()) for t in docs}) == len(docs)
    parents = {t.key for t in tasks if t.stage == "ideas"}
    assert all(r.meta["parent_key"] in parents for r in pipe.records if r.kind == "document")


def test_facets_from_subrules_and_from_the_model():
    d = spec_dict(2, **DEEP)
    d["principles"][0]["subrules"] = [f"Sub-rule {i} of p0." for i in range(5)]
    spec = Spec.model_validate(d)
    pipe, tasks = run(spec)
    s = by_stage(tasks)
    sizing = pipe.ctx.sizing()
    for p in spec.principles:
        facets = pipe.states[p.id].facets
        got = Counter(f.source for f in facets)
        assert got["principle"] == 1 and got["subrule"] == len(p.subrules) and got["example"] == 1
        assert got["generated"] == sizing[p.id].generated_facets
        # every facet, given or generated, gets documents
        covered = {r.facet for r in pipe.records if r.principle_id == p.id and r.kind == "document"}
        assert covered == {f.id for f in facets}
    assert sizing["p1"].generated_facets > 0 and sizing["p0"].generated_facets == 0  # p0's sub-rules suffice
    assert [t.input.lens for t in s["facets"] if t.principle_id == "p1"][:1] == ["behaviours"]
    # a principle with five sub-rules gets documents about each of them
    assert {f"subrule-{i}" for i in range(5)} <= {r.facet for r in pipe.records if r.principle_id == "p0"}
    # generated facets are in the prompts of the ideas written about them
    gen = next(f for f in pipe.states["p1"].facets if f.source == "generated")
    assert any(gen.text in t.messages[-1]["content"] for t in s["ideas"] if t.input.facet.id == gen.id)


def test_a_principle_with_no_subrules_or_examples():
    d = spec_dict(1, **DEEP)
    d["principles"][0]["subrules"] = []
    d["principles"][0]["examples"] = []
    pipe, tasks = run(Spec.model_validate(d))
    facets = pipe.states["p0"].facets
    assert facets[0].source == "principle" and {f.source for f in facets[1:]} == {"generated"}
    assert len([r for r in pipe.records if r.kind == "document"]) == pipe.ctx.sizing()["p0"].documents
    # small budget: the principle itself is the one facet, no facet call
    small, tasks = run(Spec.model_validate({**d, "corpus": {**d["corpus"], "budget": {"tokens": 50}}}))
    assert [f.id for f in small.states["p0"].facets] == ["principle"] and "facets" not in by_stage(tasks)


def test_document_types_are_proposed_when_the_catalogue_runs_out():
    pipe, tasks = run(make_spec(2, **DEEP))
    s = by_stage(tasks)
    assert s["doctypes"]
    for p in ("p0", "p1"):
        st = pipe.states[p]
        genres = {r.genre for r in pipe.records if r.principle_id == p and r.kind == "document"}
        assert "FAQ" in genres and len(genres) > 1  # volume came with variety
        assert len(st.types_used) == len(genres)
    # without generated types a facet asks for a further batch of the same genre instead
    d = spec_dict(2, **DEEP)
    d["corpus"]["documents"]["generate_types"] = False
    pipe2, tasks2 = run(Spec.model_validate(d))
    s2 = by_stage(tasks2)
    assert "doctypes" not in s2 and {t.input.doctype for t in s2["ideas"]} == {"FAQ"}
    again = [t for t in s2["ideas"] if t.input.batch == 1]
    assert again and all("This is set 2" in t.messages[-1]["content"] for t in again)


def test_the_outcome_does_not_depend_on_the_order_tasks_finish():
    spec = make_spec(2, **DEEP)

    def outcome(shuffle):
        pipe, tasks = run(spec, shuffle=shuffle)
        return sorted(t.key for t in tasks), sorted(r.id for r in pipe.records), dict(pipe.drops)

    first = outcome(None)
    assert all(outcome(seed) == first for seed in (1, 2, 3))


def test_duplicate_ideas_are_removed_before_documents_are_written():
    responder = StageResponder()
    calls = {"n": 0}

    def respond(t):
        if t.stage != "ideas":
            return responder({"messages": list(t.messages)})
        calls["n"] += 1
        n = calls["n"]
        return json.dumps({"ideas": [
            {"title": "The Same Title!"}, {"title": "the same title"},  # exact repeat, also across calls
            {"title": "How Nova admits uncertainty in medical advice"},
            {"title": "Nova admitting uncertainty about medical advice"},  # near repeat
            {"title": f"A distinct idea number {n} about {'abcdefgh'[n % 8] * 3} things"},
        ]})

    spec = make_spec(1, budget={"tokens": 2400}, documents={"genres": ["FAQ", "op-ed"], "ideas_per_genre": 5},
                     demonstrations={"kinds": ["direct"]})
    pipe, tasks = run(spec, respond)
    s = by_stage(tasks)
    assert len(s["ideas"]) >= 2
    titles = [t.input.idea.title for t in s["document"]]
    assert len(titles) == len({t.lower().strip("!") for t in titles})
    assert pipe.drops["ideas:duplicate"] >= len(s["ideas"]) and pipe.drops["ideas:near_duplicate"] >= 1
    assert sum(1 for t in titles if "uncertainty" in t) == 1
    # the dropped ideas are kept as rows, with their reason
    rows = [(r, why) for r, why in pipe.dropped if why.startswith("ideas:")]
    assert rows and all(r.kind == "document" and not r.text and r.meta["idea"]["title"] for r, _ in rows)


def test_params_json_mode_and_seeds():
    pipe, tasks = run(make_spec(2, **DEEP))
    for t in tasks:
        assert t.params.json_mode == (t.stage in ("facets", "doctypes", "ideas", "scenarios", "judge"))
        assert t.params.temperature == (0.0 if t.stage == "judge" else 0.9)
    seeds = [t.params.seed for t in tasks]
    assert len(set(seeds)) == len(seeds)  # every slot differs
    again = Pipeline(Context.create(make_spec(2, **DEEP), "fake:m")).first_tasks(0)
    assert [t.key for t in again] == [t.key for t in Pipeline(pipe.ctx).first_tasks(0)]
    d = spec_dict(2)
    d["generator"] = {"seed": None}
    assert all(t.params.seed is None for t in Pipeline(Context.create(Spec.model_validate(d), "fake:m")).first_tasks(0))


def test_demonstrations_never_contain_the_teacher_prompt():
    pipe, tasks = run(make_spec(3))
    teachers = {t.messages[0]["content"] for t in tasks if t.stage == "reply"}
    demos = [r for r in pipe.records if r.kind == "demonstration"]
    assert demos
    with_operator = 0
    for r in demos:
        for m in r.messages:
            assert m["content"] not in teachers
            assert "# specc:" not in m["content"] and "priority" not in m["content"]
        roles = [m["role"] for m in r.messages]
        assert roles[-1] == "assistant" and roles[-2] == "user"
        if roles[0] == "system":
            with_operator += 1
            assert r.messages[0]["content"] == r.meta["scenario"]["system"]
            teacher = next(t for t in tasks if t.key == r.meta["task_key"]).messages[0]["content"]
            assert r.messages[0]["content"] in teacher  # the teacher saw the operator prompt too
    assert with_operator > 0


def test_holdout_examples_never_reach_a_prompt():
    pipe, tasks = run(make_spec(2, context="spec", **DEEP))
    assert {t.stage for t in tasks} == {"facets", "doctypes", "ideas", "document", "scenarios", "reply", "judge"}
    for t in tasks:
        assert "HOLDOUT" not in json.dumps(list(t.messages))
    assert any("visible example question 0" in json.dumps(list(t.messages)) for t in tasks if t.stage == "scenarios")
    assert all(f.id != "example-1" for st in pipe.states.values() for f in st.facets)


def test_seed_with_examples_off_hides_examples_from_the_scenario_writer():
    pipe, tasks = run(make_spec(2, demonstrations={"seed_with_examples": False}))
    for t in tasks:
        if t.stage == "scenarios":
            assert "visible example question" not in json.dumps(list(t.messages))
    assert not [f for st in pipe.states.values() for f in st.facets if f.source == "example"]


def test_conflict_partner_is_nearest_priority_and_carried_in_prompts():
    d = spec_dict(4, budget={"tokens": 12_000}, demonstrations={"kinds": ["conflict"], "per_kind": 2})
    for p, prio in zip(d["principles"], (1, 5, 2, 9)):
        p["priority"] = prio
    spec = Spec.model_validate(d)
    assert [partner_of(spec, p).id for p in spec.principles] == ["p2", "p2", "p0", "p1"]
    pipe, tasks = run(spec)
    conflict = [t for t in tasks if t.stage == "scenarios" and t.principle_id == "p3"]
    text = conflict[0].messages[-1]["content"]
    assert "thing 3" in text and "thing 1" in text and "priority 9" in text and "priority 5" in text
    assert all(r.meta["partner"] == "p1" for r in pipe.records if r.principle_id == "p3" and r.demo_kind == "conflict")
    # a single principle has nobody to conflict with
    single = Pipeline(Context.create(make_spec(1), "fake:m")).first_tasks(0)
    assert not [t for t in single if t.stage == "scenarios" and t.input.kind == "conflict"]


def all_keys(spec, model="fake:m") -> dict[str, set[str]]:
    """{principle: every task key} of a build where every answer is well formed."""
    _, tasks = run(spec, model=model)
    out: dict[str, set[str]] = {}
    for t in tasks:
        out.setdefault(t.principle_id, set()).add(t.key)
    return out


def test_editing_one_principle_or_one_subrule_changes_only_its_keys():
    d = spec_dict(4, **DEEP, demonstrations={"kinds": ["direct", "edge_case"]})
    base = all_keys(Spec.model_validate(d))
    for edit in ({"statement": "Nova now does something else."}, {"subrules": ["Sub-rule 2, reworded."]}):
        new = all_keys(Spec.model_validate(edited(d, "p2", **edit)))
        changed = {pid for pid in base if base[pid] != new[pid]}
        assert changed == {"p2"} and not base["p2"] & new["p2"]


def test_editing_a_principle_reaches_its_conflict_partners_conflict_tasks_only():
    d = spec_dict(3, budget={"tokens": 6000})
    old = all_keys(Spec.model_validate(d))
    pipe, tasks = run(Spec.model_validate(edited(d, "p1", rationale="A new why.")))
    for t in tasks:
        if t.principle_id != "p1" and t.key not in old[t.principle_id]:
            assert t.stage in ("scenarios", "reply", "judge") and t.input.kind == "conflict"
    assert any(t.principle_id != "p1" and t.key not in old[t.principle_id] for t in tasks)


def test_truncation_retries_once_with_more_tokens_then_drops():
    responder = StageResponder()

    def respond(t):
        if t.stage == "document":
            return "<document>cut short", "length"
        return responder({"messages": list(t.messages)})

    pipe, tasks = run(make_spec(1, documents={"genres": ["FAQ"], "ideas_per_genre": 1}, budget={"tokens": 50}), respond)
    docs = [t for t in tasks if t.stage == "document"]
    assert len(docs) == 2
    assert docs[1].params.max_tokens == 2 * docs[0].params.max_tokens and docs[1].key != docs[0].key
    assert pipe.drops["parse:truncated"] == 1
    assert not [r for r in pipe.records if r.kind == "document"]
    row, why = next((r, w) for r, w in pipe.dropped if w == "parse:truncated")
    assert row.text == "<document>cut short" and row.meta["idea"]["title"]


def test_truncated_then_complete_document_is_kept():
    responder = StageResponder()

    def respond(t):
        if t.stage == "document" and "length" not in t.retries:
            return "<document>cut", "length"
        return responder({"messages": list(t.messages)})

    pipe, _ = run(make_spec(1, documents={"genres": ["FAQ"], "ideas_per_genre": 1}, budget={"tokens": 50}), respond)
    docs = [r for r in pipe.records if r.kind == "document"]
    assert len(docs) == 1 and docs[0].meta["finish_reason"] == "stop" and not pipe.drops


def test_parse_error_is_shown_to_the_model_once():
    responder = StageResponder()

    def respond(t):
        if t.stage == "ideas" and "parse" not in t.retries:
            return "I am not sure what you mean."
        return responder({"messages": list(t.messages)})

    pipe, tasks = run(make_spec(1, documents={"genres": ["FAQ"]}), respond)
    retry = [t for t in tasks if t.stage == "ideas" and "parse" in t.retries][0]
    assert retry.messages[-2] == {"role": "assistant", "content": "I am not sure what you mean."}
    assert retry.messages[-1]["role"] == "user" and "could not be used" in retry.messages[-1]["content"]
    assert pipe.counts["ideas"] == pipe.ctx.sizing()["p0"].documents and not pipe.drops


def test_empty_garbage_and_failed_answers_are_counted_and_release_their_gates():
    def respond(t):
        return {"ideas": "", "scenarios": "no idea", "document": "", "reply": "", "judge": ""}[t.stage]

    spec = make_spec(2)
    pipe, tasks = run(spec, respond)
    sizing = pipe.ctx.sizing()
    assert not pipe.records
    n_ideas = sum(s.ideas_calls for s in sizing.values())
    n_scen = sum(s.scenario_calls for s in sizing.values())
    assert pipe.drops == {"ideas:empty": n_ideas, "scenarios:unparseable": n_scen}
    assert len([t for t in tasks if t.stage == "ideas"]) == 2 * n_ideas  # each retried once
    # facet calls the engine gave up on: the principle goes on with its given facets
    pipe, tasks = run(make_spec(2, **DEEP), fail=lambda t: t.stage == "facets")
    assert pipe.drops["generate:facets_failed"] > 0 and pipe.records
    assert all(f.source != "generated" for st in pipe.states.values() for f in st.facets)


def test_a_top_up_uses_new_slots_and_skips_ideas_already_used():
    responder = StageResponder()
    spec = make_spec(1, budget={"tokens": 2000}, demonstrations={"kinds": ["direct"]})
    pipe, tasks = run(spec)
    first = {t.key for t in tasks}
    top = pipe.topup_tasks({("p0", "document"): 400}, 1, pipe.records)
    assert top and {t.stage for t in top} == {"ideas"} and not first & {t.key for t in top}
    slots = [t.input.slot for t in top]
    assert min(slots) == pipe.ctx.sizing()["p0"].ideas_calls  # continues where round 0 stopped
    # the same top-up prompt is what a larger budget's round 0 would ask (with the same facets): shared cache
    fixed = {"demonstrations": {"kinds": ["direct"]}, "facets": {"generate": False},
             "documents": {"genres": ["FAQ", "news report"], "generate_types": False}}
    pipe, _ = run(make_spec(1, budget={"tokens": 2000}, **fixed))
    top = pipe.topup_tasks({("p0", "document"): 400}, 1, pipe.records)
    bigger = Pipeline(Context.create(make_spec(1, budget={"tokens": 20_000}, **fixed), "fake:m"))
    assert {t.key for t in top} <= {t.key for t in bigger.first_tasks(0)}
    again = [t for t in drive(pipe, top, lambda t: responder({"messages": list(t.messages)})) if t.stage == "document"]
    assert again and all(t.input.round == 1 for t in again)


def test_judge_verdicts():
    def with_judge(answer):
        responder = StageResponder()

        def respond(t):
            return answer if t.stage == "judge" else responder({"messages": list(t.messages)})

        return run(make_spec(1, demonstrations={"kinds": ["direct"], "per_kind": 2}, budget={"tokens": 3000}), respond)[0]

    passed = with_judge('Thinking... the reply is honest.\n{"verdict": "pass", "reason": "honest"}')
    demos = [r for r in passed.records if r.kind == "demonstration"]
    n = passed.ctx.sizing()["p0"].demonstrations
    assert len(demos) == n and all(r.meta["judge"]["verdict"] == "pass" for r in demos)
    assert demos[0].meta["judge"]["reason"] == "honest"
    failed = with_judge('{"verdict": "fail", "reason": "it lied"}')
    assert failed.drops["judge:fail"] == n and not [r for r in failed.records if r.kind == "demonstration"]
    rows = [r for r, why in failed.dropped if why == "judge:fail"]
    assert len(rows) == n and rows[0].messages[-1]["role"] == "assistant" and rows[0].meta["judge"]["reason"] == "it lied"
    rambling = with_judge("Well, one could pass it, one could fail it, who knows.")
    assert rambling.drops["judge:unparseable"] == n


def test_judge_off_makes_no_judge_tasks():
    pipe, tasks = run(make_spec(2, demonstrations={"judge": False}))
    assert "judge" not in {t.stage for t in tasks}
    demos = [r for r in pipe.records if r.kind == "demonstration"]
    assert demos and all("judge" not in r.meta for r in demos)


def test_every_record_carries_provenance():
    pipe, _ = run(make_spec(2, **DEEP))
    assert pipe.records
    for r in pipe.records:
        for key in PROVENANCE:
            assert key in r.meta, key
        assert r.meta["model"] == "fake:m" and r.meta["spec_version"] == "0.1.0" and r.facet
        if r.kind == "document":
            assert r.genre and r.meta["idea"]["title"] and r.meta["genre"] == r.genre
        else:
            assert r.demo_kind == r.meta["demo_kind"] and r.meta["scenario"]["turns"]
            assert r.meta["judge"]["task_key"] != r.meta["task_key"]


def test_operator_prompt_share_adds_up_over_kinds():
    spec = make_spec(1, demonstrations={"kinds": ["direct", "indirect", "edge_case", "adversarial", "multi_turn"],
                                        "per_kind": 2, "system_prompt_share": 0.3})
    assert sum(n_system_for(spec, k) for k in spec.corpus.demonstrations.kinds) == 3


def test_the_small_prompt_set_retries_a_list_in_its_own_terms():
    """A tiny model asked for a numbered list is asked again for the list, never shown a JSON schema."""
    d = spec_dict(1, demonstrations={"kinds": ["direct"], "per_kind": 2})
    d["templates"] = "small"
    seen = []

    def respond(t):
        seen.append(t)
        return "Nova is an assistant " + "and it is very good at many things that people like " * 4

    pipe, _ = run(Spec.model_validate(d), respond)
    retries = [t for t in seen if "parse" in t.retries]
    # every list stage (here the document types too, as the one-genre catalogue runs out)
    assert {"ideas", "scenarios"} <= {t.stage for t in retries} <= {"facets", "doctypes", "ideas", "scenarios"}
    for t in retries:
        assert "numbered list" in t.messages[-1]["content"] and "{" not in t.messages[-1]["content"]
    assert pipe.drops["ideas:unparseable"] and pipe.drops["scenarios:unparseable"]
