"""Task expansion and result handling, driven in-process (the engine's part is tested against a server elsewhere)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "stages"))

from responder import StageResponder  # noqa: E402
from stagekit import FULL, drive, edited, full_spec, make_spec, spec_dict  # noqa: E402

from specc.generate.base import Generation  # noqa: E402
from specc.plan import downstream_tasks  # noqa: E402
from specc.spec.schema import Spec  # noqa: E402
from specc.stages import Context, Pipeline, partner_of  # noqa: E402
from specc.stages.demonstrations import n_system_for  # noqa: E402

PROVENANCE = ("principle_id", "model", "template_hash", "task_key", "spec_version", "finish_reason", "round")


def run(spec, respond=None, model="fake:m"):
    pipe = Pipeline(Context.create(spec, model))
    responder = StageResponder()
    respond = respond or (lambda t: responder({"messages": list(t.messages)}))
    tasks = drive(pipe, pipe.first_tasks(0), respond)
    return pipe, tasks


def by_stage(tasks):
    out = {}
    for t in tasks:
        out.setdefault(t.stage, []).append(t)
    return out


def test_expansion_counts_and_dag():
    pipe, tasks = run(full_spec(3))
    s = by_stage(tasks)
    assert len(s["ideas"]) == 3 * 2 and len(s["document"]) == 3 * 2 * 2
    assert len(s["scenarios"]) == 3 * 3 and len(s["reply"]) == 3 * 3 * 2 == len(s["judge"])
    kinds = {(r.kind, r.demo_kind) for r in pipe.records}
    assert kinds == {("document", None), ("demonstration", "direct"), ("demonstration", "multi_turn"),
                     ("demonstration", "conflict")}
    assert pipe.ideas_count == 12 and pipe.scenarios_count == 18 and not pipe.drops
    # a document task knows the ideas task it came from
    parents = {t.key for t in s["ideas"]}
    assert all(r.meta["parent_key"] in parents for r in pipe.records if r.kind == "document")


def test_params_json_mode_and_seeds():
    pipe, tasks = run(make_spec(2))
    for t in tasks:
        assert t.params.json_mode == (t.stage in ("ideas", "scenarios", "judge"))
        assert t.params.temperature == (0.0 if t.stage == "judge" else 0.9)
    seeds = [t.params.seed for t in tasks]
    assert len(set(seeds)) == len(seeds)  # every slot differs
    again = Pipeline(Context.create(make_spec(2), "fake:m")).first_tasks(0)
    assert [t.key for t in again] == [t.key for t in pipe.first_tasks(0)]
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
    pipe, tasks = run(full_spec(3, context="spec"))
    assert {t.stage for t in tasks} == {"ideas", "document", "scenarios", "reply", "judge"}
    for t in tasks:
        text = json.dumps(list(t.messages))
        assert "HOLDOUT" not in text
    assert any("visible example question 0" in json.dumps(list(t.messages)) for t in tasks if t.stage == "scenarios")


def test_seed_with_examples_off_hides_examples_from_the_scenario_writer():
    _, tasks = run(make_spec(2, demonstrations={"seed_with_examples": False}))
    for t in tasks:
        if t.stage == "scenarios":
            assert "visible example question" not in json.dumps(list(t.messages))


def test_conflict_partner_is_nearest_priority_and_carried_in_prompts():
    d = spec_dict(4, budget=FULL)
    for p, prio in zip(d["principles"], (1, 5, 2, 9)):
        p["priority"] = prio
    spec = Spec.model_validate(d)
    assert [partner_of(spec, p).id for p in spec.principles] == ["p2", "p2", "p0", "p1"]
    pipe, tasks = run(spec)
    conflict = [t for t in tasks if t.stage == "scenarios" and t.meta["kind"] == "conflict" and t.principle_id == "p3"]
    text = conflict[0].messages[-1]["content"]
    assert "thing 3" in text and "thing 1" in text and "priority 9" in text and "priority 5" in text
    assert all(r.meta["partner"] == "p1" for r in pipe.records if r.principle_id == "p3" and r.demo_kind == "conflict")
    # a single principle has nobody to conflict with
    single = Pipeline(Context.create(make_spec(1), "fake:m")).first_tasks(0)
    assert not [t for t in single if t.meta.get("kind") == "conflict"]


def test_editing_one_principle_changes_only_its_keys():
    d = spec_dict(4, budget=FULL, demonstrations={"kinds": ["direct", "edge_case"]})
    old = Context.create(Spec.model_validate(d), "fake:m")
    new = Context.create(Spec.model_validate(edited(d, "p2", statement="Nova now does something else.")), "fake:m")

    def keys(ctx):
        out = {}
        for t in Pipeline(ctx).first_tasks(0):
            out[(t.stage, t.principle_id, t.meta.get("genre") or t.meta["kind"])] = (
                t.key, tuple(c.key for c in downstream_tasks(ctx, t).values()))
        return out

    a, b = keys(old), keys(new)
    assert a.keys() == b.keys()
    changed = {k for k in a if a[k][0] != b[k][0]}
    assert changed and {k[1] for k in changed} == {"p2"}
    assert {k[1] for k in a if a[k][1] != b[k][1]} == {"p2"}
    assert len(changed) == 2 + 2  # two genres, two kinds


def test_editing_a_principle_reaches_its_conflict_partners_conflict_tasks_only():
    d = spec_dict(3, budget=FULL)
    old = Pipeline(Context.create(Spec.model_validate(d), "fake:m")).first_tasks(0)
    new = Pipeline(Context.create(Spec.model_validate(edited(d, "p1", rationale="A new why.")), "fake:m")).first_tasks(0)
    changed = {(t.principle_id, t.meta.get("genre") or t.meta["kind"]) for t, u in zip(old, new) if t.key != u.key}
    partners = {p for p, kind in changed if p != "p1"}
    assert all(kind == "conflict" for p, kind in changed if p != "p1")
    assert partners  # p1's rationale appears in the conflict prompts that pair with it


def test_truncation_retries_once_with_more_tokens_then_drops():
    responder = StageResponder()

    def respond(t):
        if t.stage == "document":
            return "<document>cut short", "length"
        return responder({"messages": list(t.messages)})

    pipe, tasks = run(make_spec(1, documents={"genres": ["FAQ"], "ideas_per_genre": 1}), respond)
    docs = [t for t in tasks if t.stage == "document"]
    assert len(docs) == 2
    assert docs[1].params.max_tokens == 2 * docs[0].params.max_tokens and docs[1].key != docs[0].key
    assert pipe.drops["parse:truncated"] == 1
    assert not [r for r in pipe.records if r.kind == "document"]


def test_truncated_then_complete_document_is_kept():
    responder = StageResponder()

    def respond(t):
        if t.stage == "document" and not t.meta.get("length_retry"):
            return "<document>cut", "length"
        return responder({"messages": list(t.messages)})

    pipe, _ = run(make_spec(1, documents={"genres": ["FAQ"], "ideas_per_genre": 1}), respond)
    docs = [r for r in pipe.records if r.kind == "document"]
    assert len(docs) == 1 and docs[0].meta["finish_reason"] == "stop" and not pipe.drops


def test_parse_error_is_shown_to_the_model_once():
    responder = StageResponder()

    def respond(t):
        if t.stage == "ideas" and not t.meta.get("parse_retry"):
            return "I am not sure what you mean."
        return responder({"messages": list(t.messages)})

    pipe, tasks = run(make_spec(1, documents={"genres": ["FAQ"]}), respond)
    retry = [t for t in tasks if t.stage == "ideas" and t.meta.get("parse_retry")][0]
    assert retry.messages[-2] == {"role": "assistant", "content": "I am not sure what you mean."}
    assert retry.messages[-1]["role"] == "user" and "could not be used" in retry.messages[-1]["content"]
    assert pipe.ideas_count == 2 and not pipe.drops


def test_empty_and_garbage_answers_are_counted():
    def respond(t):
        return {"ideas": "", "scenarios": "no idea", "document": "", "reply": "", "judge": ""}[t.stage]

    pipe, tasks = run(full_spec(2), respond)
    assert not pipe.records
    assert pipe.drops == {"ideas:empty": 4, "scenarios:unparseable": 6}
    assert len([t for t in tasks if t.stage == "ideas"]) == 8  # each retried once


def test_duplicate_ideas_dropped_and_top_up_avoids_earlier_ones():
    same = json.dumps({"ideas": [{"title": "The Same Title!"}, {"title": "the same title"}, {"title": "Another one"}]})
    responder = StageResponder()

    def respond(t):
        return same if t.stage == "ideas" else responder({"messages": list(t.messages)})

    spec = make_spec(1, documents={"genres": ["FAQ"], "ideas_per_genre": 3},
                     demonstrations={"kinds": ["direct"]})
    pipe, tasks = run(spec, respond)
    assert pipe.drops["ideas:duplicate"] == 1 and pipe.ideas_count == 2
    pipe.end_round()
    from specc.stages import documents

    top = documents.ideas_tasks(pipe.ctx, 1)
    assert all("extra round 1" in t.messages[-1]["content"] for t in top)
    drive(pipe, top, respond)
    assert pipe.drops["ideas:duplicate"] == 1 + 3 and pipe.ideas_count == 2


def test_judge_verdicts():
    def with_judge(answer):
        responder = StageResponder()

        def respond(t):
            return answer if t.stage == "judge" else responder({"messages": list(t.messages)})

        return run(make_spec(1, demonstrations={"kinds": ["direct"], "per_kind": 2}), respond)[0]

    passed = with_judge('Thinking... the reply is honest.\n{"verdict": "pass", "reason": "honest"}')
    demos = [r for r in passed.records if r.kind == "demonstration"]
    assert len(demos) == 2 and all(r.meta["judge"]["verdict"] == "pass" for r in demos)
    assert demos[0].meta["judge"]["reason"] == "honest"
    failed = with_judge("Verdict: FAIL - it lied.")
    assert failed.drops["judge:fail"] == 2 and not [r for r in failed.records if r.kind == "demonstration"]
    rambling = with_judge("Well, one could pass it, one could fail it, who knows.")
    assert rambling.drops["judge:unparseable"] == 2


def test_judge_off_makes_no_judge_tasks():
    pipe, tasks = run(make_spec(2, demonstrations={"judge": False}))
    assert "judge" not in {t.stage for t in tasks}
    demos = [r for r in pipe.records if r.kind == "demonstration"]
    assert demos and all("judge" not in r.meta for r in demos)


def test_every_record_carries_provenance():
    pipe, _ = run(make_spec(2))
    assert pipe.records
    for r in pipe.records:
        for key in PROVENANCE:
            assert key in r.meta, key
        assert r.meta["model"] == "fake:m" and r.meta["spec_version"] == "0.1.0" and r.tokens > 0
        if r.kind == "document":
            assert r.genre and r.meta["idea"]["title"] and r.meta["genre"] == r.genre
        else:
            assert r.demo_kind == r.meta["demo_kind"] and r.meta["scenario"]["turns"]
            assert r.meta["judge"]["task_key"] != r.meta["task_key"]


def test_operator_prompt_share_adds_up_over_kinds():
    spec = make_spec(1, demonstrations={"kinds": ["direct", "indirect", "edge_case", "adversarial", "multi_turn"],
                                        "per_kind": 2, "system_prompt_share": 0.3})
    assert sum(n_system_for(spec, k) for k in spec.corpus.demonstrations.kinds) == 3


def test_only_the_first_k_ideas_and_n_scenarios_get_children():
    from specc.stages import demonstrations, documents

    spec = make_spec(1, documents={"genres": ["FAQ"], "ideas_per_genre": 3}, demonstrations={"kinds": ["direct"], "per_kind": 3})
    ctx = Context.create(spec, "fake:m")
    p = spec.principles[0]
    one, three = documents.ideas_task(ctx, p, "FAQ", k=1), documents.ideas_task(ctx, p, "FAQ")
    # the prompt (and so the key) asks for ideas_per_genre whatever k is
    assert one.key == three.key and "Propose 3 ideas" in one.messages[-1]["content"]
    answer = json.dumps({"ideas": [{"title": f"Idea number {i}"} for i in range(3)]})
    pipe = Pipeline(ctx)

    def gen(text):
        return Generation(text, "stop", 1, 1, "m")

    docs = pipe.on_result(one, gen(answer))
    assert [t.meta["idea"]["title"] for t in docs] == ["Idea number 0"]
    assert [t.meta["idea"]["title"] for t in pipe.on_result(three, gen(answer))] == [f"Idea number {i}" for i in range(3)]
    s2 = demonstrations.scenario_task(ctx, p, "direct", n=2)
    assert s2.key == demonstrations.scenario_task(ctx, p, "direct").key and "Write 3 different" in s2.messages[-1]["content"]
    scen = json.dumps({"scenarios": [{"turns": [{"role": "user", "content": f"Question {i} about refunds?"}]} for i in range(3)]})
    replies = pipe.on_result(s2, gen(scen))
    assert [t.meta["scenario"]["turns"][0]["content"] for t in replies] == ["Question 0 about refunds?", "Question 1 about refunds?"]


def test_the_small_prompt_set_retries_a_list_in_its_own_terms():
    """A tiny model asked for a numbered list is asked again for the list, never shown a JSON schema."""
    d = spec_dict(1, demonstrations={"kinds": ["direct"], "per_kind": 2})
    d["templates"] = "small"
    seen = []

    def respond(t):
        seen.append(t)
        return "Nova is an assistant " + "and it is very good at many things that people like " * 4

    pipe, _ = run(Spec.model_validate(d), respond)
    retries = [t for t in seen if t.meta.get("parse_retry")]
    assert {t.stage for t in retries} == {"ideas", "scenarios"}
    for t in retries:
        assert "numbered list" in t.messages[-1]["content"] and "{" not in t.messages[-1]["content"]
    assert pipe.drops["ideas:unparseable"] and pipe.drops["scenarios:unparseable"]
