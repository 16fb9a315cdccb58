"""Demonstrations: scenarios per principle × kind, a teacher reply for each of the first n, then a judge."""

from __future__ import annotations

from specc.curate.scaffold import brief_pieces
from specc.generate.base import Generation, Message
from specc.records import Record, Task, sha256_hex
from specc.spec.schema import Principle, Spec
from specc.stages import (
    JSON_AGAIN,
    Context,
    Pipeline,
    format_example,
    format_principle,
    max_tokens_for,
    partner_of,
    recover_list,
    retry_longer,
    retry_with_error,
    spec_content,
)
from specc.stages.parsing import ParseFailure, Scenario, parse_reply, parse_scenarios
from specc.stages.verdict import parse_verdict
from specc.tokens import count_messages

KIND_DESCRIPTIONS = {
    "direct": "the user asks for something where the principle plainly applies.",
    "indirect": "the principle matters, but the user never mentions it; it is implicit in an everyday request.",
    "edge_case": "a borderline case where it is not obvious whether or how the principle applies.",
    "adversarial": "the user tries to make the assistant break the principle: pressure, flattery, tricks, "
    "role-play or false claims of authority.",
    "multi_turn": "a longer conversation: earlier turns set the scene and the principle becomes relevant "
    "in the last user turn.",
    "conflict": "the two principles pull in different directions, and the assistant has to decide which one wins.",
}


def n_system_for(spec: Spec, kind: str) -> int:
    """How many of a kind's scenarios get an operator prompt: cumulative rounding over the kinds,
    so the overall share matches ``system_prompt_share`` even when per_kind is small."""
    demos = spec.corpus.demonstrations
    i = list(demos.kinds).index(kind) if kind in demos.kinds else 0

    def upto(j: int) -> int:
        return int(j * demos.per_kind * demos.system_prompt_share + 0.5)

    return upto(i + 1) - upto(i)


def _pair(ctx: Context, p: Principle, kind: str, *, examples: bool = True) -> tuple[Principle | None, dict]:
    partner = partner_of(ctx.spec, p) if kind == "conflict" else None
    return partner, {
        "partner": partner.model_dump(mode="json", exclude={"examples"}) if partner else None,
        "partner_text": format_principle(partner, examples=examples) if partner else "",
    }


def scenario_task(ctx: Context, p: Principle, kind: str, round: int = 0, n: int | None = None) -> Task | None:
    """The scenarios task for ``p`` × ``kind``; None for a conflict when there is no other principle.

    It asks for ``per_kind`` scenarios whatever ``n`` is (so the budget never changes the
    key); the first ``n`` get a reply.
    """
    demos = ctx.spec.corpus.demonstrations
    # Examples reach the scenario writer only through examples_text, under seed_with_examples.
    partner, pair = _pair(ctx, p, kind, examples=False)
    if kind == "conflict" and partner is None:
        return None
    seeds = [e for e in p.examples if not e.holdout] if demos.seed_with_examples else []
    messages = ctx.templates["scenarios"].render(
        **ctx.base(p, round, examples=False),
        **pair,
        kind=kind,
        kind_description=KIND_DESCRIPTIONS[kind],
        n=demos.per_kind,
        n_system=n_system_for(ctx.spec, kind),
        examples_text="\n".join(format_example(e) for e in seeds),
    )
    params = ctx.params("scenarios", max_tokens_for(ctx.spec, "scenarios", kind), (p.id, kind, round), json_mode=True)
    n = demos.per_kind if n is None else max(0, min(n, demos.per_kind))
    meta = {"kind": kind, "round": round, "n": n, "partner": partner.id if partner else None}
    return ctx.task("scenarios", p, messages, params, meta)


def scenario_tasks(ctx: Context, round: int = 0, kinds_for: dict[str, list[tuple[str, int]]] | None = None) -> list[Task]:
    """A scenarios task per planned (kind, replies) slot of each principle; ``kinds_for`` gives a top-up's slots instead."""
    out = []
    for p in ctx.spec.principles:
        slots = ctx.sizing()[p.id].kinds if kinds_for is None else kinds_for.get(p.id, [])
        out += [t for k, n in slots if (t := scenario_task(ctx, p, k, round, n)) is not None]
    return out


def reply_task(ctx: Context, p: Principle, kind: str, scenario: Scenario, round: int = 0, parent_key: str = "") -> Task:
    """The teacher call: principle(s) and operator prompt in the system message, then the user's turns."""
    _, pair = _pair(ctx, p, kind)
    rendered = ctx.templates["reply"].render(**ctx.base(p, round), **pair, operator=scenario.system or "")
    teacher = "\n\n".join(m["content"] for m in rendered)
    messages: list[Message] = [{"role": "system", "content": teacher}] + [t.model_dump() for t in scenario.turns]
    params = ctx.params("reply", max_tokens_for(ctx.spec, "reply"), (p.id, kind, round, scenario.identity()))
    meta = {"kind": kind, "round": round, "scenario": scenario.model_dump(), "partner": pair["partner"] and pair["partner"]["id"],
            "parent_key": parent_key}
    return ctx.task("reply", p, messages, params, meta)


def judge_task(ctx: Context, p: Principle, kind: str, scenario: Scenario, reply: str, round: int = 0,
               draft: dict | None = None) -> Task:
    _, pair = _pair(ctx, p, kind)
    messages = ctx.templates["judge"].render(
        **ctx.base(p, round), **pair, operator=scenario.system or "",
        turns=[t.model_dump() for t in scenario.turns], reply=reply,
    )
    seed = (p.id, kind, round, scenario.identity(), sha256_hex(reply)[:16])
    params = ctx.params("judge", max_tokens_for(ctx.spec, "judge"), seed, json_mode=True)
    return ctx.task("judge", p, messages, params, {"kind": kind, "round": round, "draft": draft or {}})


def on_scenarios(pipe: Pipeline, task: Task, gen: Generation) -> list[Task]:
    ctx = pipe.ctx
    kind = task.meta["kind"]
    try:
        scenarios, truncated, invalid = parse_scenarios(gen.text, kind)
    except ParseFailure as f:
        return recover_list(pipe, task, gen, f, "scenarios")
    pipe.drop("scenarios:invalid", invalid, task=task)
    seen: set[str] = set()
    kept: list[Scenario] = []
    for s in scenarios:
        if s.identity() in seen:
            pipe.drop("scenarios:duplicate", task=task)
            continue
        seen.add(s.identity())
        if len(kept) < task.meta["n"]:
            kept.append(s)
    pipe.scenarios_count += len(kept)
    p = ctx.spec.principle(task.principle_id)
    return [reply_task(ctx, p, kind, s, task.meta["round"], task.key) for s in kept]


def on_reply(pipe: Pipeline, task: Task, gen: Generation) -> list[Task]:
    ctx = pipe.ctx
    name = ctx.spec.assistant.name
    try:
        reply = parse_reply(gen.text, gen.finish_reason, name)
    except ParseFailure as f:
        retry = (
            retry_longer(task)
            if f.reason == "truncated"
            else retry_with_error(task, gen.text, f, f"Reply to the user's last message as {name}.")
        )
        if retry:
            return [retry]
        pipe.drop(f"parse:{f.reason}", task=task)
        return []
    scenario = Scenario.model_validate(task.meta["scenario"])
    p = ctx.spec.principle(task.principle_id)
    partner = ctx.spec.principle(task.meta["partner"]) if task.meta["partner"] else None
    # The teacher's system prompt is the reply's brief; the user's turns are the record itself.
    content = spec_content(p, partner) + [ctx.spec_text, scenario.system or ""]
    draft = {
        "brief": brief_pieces([task.messages[0]["content"]], content, ctx.pieces),
        "messages": scenario.messages() + [{"role": "assistant", "content": reply}],
        "meta": ctx.provenance(task, gen)
        | {"demo_kind": task.meta["kind"], "scenario": task.meta["scenario"], "partner": task.meta["partner"],
           "parent_key": task.meta["parent_key"]},
    }
    if ctx.judge:
        return [judge_task(ctx, p, task.meta["kind"], scenario, reply, task.meta["round"], draft)]
    _add_demo(pipe, task.principle_id, task.meta["kind"], draft)
    return []


def on_judge(pipe: Pipeline, task: Task, gen: Generation) -> list[Task]:
    try:
        verdict = parse_verdict(gen.text)
    except ParseFailure as f:
        retry = retry_with_error(task, gen.text, f, JSON_AGAIN)
        if retry:
            return [retry]
        pipe.drop("judge:unparseable", task=task)
        return []
    if verdict.verdict != "pass":
        pipe.drop("judge:fail", task=task)
        return []
    draft = task.meta["draft"]
    judged = {"verdict": verdict.verdict, "reason": verdict.reason, "task_key": task.key,
              "template_hash": task.template_hash}
    _add_demo(pipe, task.principle_id, task.meta["kind"], {**draft, "meta": {**draft["meta"], "judge": judged}})
    return []


def _add_demo(pipe: Pipeline, pid: str, kind: str, draft: dict) -> None:
    messages = draft["messages"]
    pipe.records.append(
        Record(
            kind="demonstration",
            principle_id=pid,
            messages=messages,
            demo_kind=kind,
            tokens=count_messages(pipe.ctx.tokenizer, messages),
            meta=dict(draft["meta"]),
            brief=draft["brief"],
        )
    )
