"""Spec → Plan: quotas, the first-stage tasks, expected task counts, tokens and cost; no LLM call.

How many tasks run follows from the quotas (``Context.sizing``); what each prompt says does
not, so a budget change re-uses every cached call. Only first-stage task keys (ideas,
scenarios) are knowable before generation. With a cache, the plan walks it: a cached
parent is parsed exactly as a build would, so its children's keys are exact too; only
what hangs below an uncached task is estimated.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from specc.generate.pricing import cost_usd, price_for
from specc.quotas import compute_quotas
from specc.records import Record, Task
from specc.spec.schema import Spec
from specc.stages import (
    FILL,
    OVERSHOOT,
    Context,
    Pipeline,
    expected_demonstration_tokens,
    expected_document_tokens,
    fill_slots,
    max_tokens_for,
    proto_scenario,
    rotation_offsets,
    usable_kinds,
)
from specc.stages import demonstrations as demos_mod
from specc.stages import documents as docs_mod
from specc.stages.parsing import Idea
from specc.tokens import count_messages

STAGE_ORDER = ("ideas", "document", "scenarios", "reply", "judge")

# Stand-ins for an idea, a scenario (specc.stages.proto_scenario) and a reply of typical size: they give
# downstream prompts whose token counts (and, for diff, whose keys minus the parent's output) are representative.
PROTO_IDEA = Idea(
    title="How the assistant handled a difficult request, and why",
    angle="A concrete situation that shows the behaviour and the reasoning behind it",
    audience="general readers",
    setting="a widely read publication, this year",
)


def proto_reply(spec: Spec) -> str:
    words = int(spec.corpus.demonstrations.max_tokens * FILL["reply"] * 0.75)
    return " ".join(["word"] * max(words, 1))


def downstream_tasks(ctx: Context, task: Task) -> dict[str, Task]:
    """One representative child task per downstream stage of a first-stage task (parent output stubbed)."""
    p = ctx.spec.principle(task.principle_id)
    r = task.meta.get("round", 0)
    if task.stage == "ideas":
        return {"document": docs_mod.document_task(ctx, p, task.meta["genre"], PROTO_IDEA, r)}
    kind = task.meta["kind"]
    sc = proto_scenario(kind)
    out = {"reply": demos_mod.reply_task(ctx, p, kind, sc, r)}
    if ctx.judge:
        out["judge"] = demos_mod.judge_task(ctx, p, kind, sc, proto_reply(ctx.spec), r)
    return out


def children_per(ctx: Context, task: Task) -> dict[str, int]:
    """How many tasks of each stage one task is expected to spawn (retries not counted)."""
    judge = ctx.judge
    if task.stage == "ideas":
        return {"document": task.meta["k"]}
    if task.stage == "scenarios":
        n = task.meta["n"]
        return {"reply": n, **({"judge": n} if judge else {})}
    if task.stage == "reply" and judge:
        return {"judge": 1}
    return {}


@dataclass
class StageEstimate:
    tasks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class CacheEstimate:
    path: str
    cached: Counter = field(default_factory=Counter)  # exact: found in the cache
    to_run: Counter = field(default_factory=Counter)  # exact: key known and not cached
    to_run_estimated: Counter = field(default_factory=Counter)  # below an uncached task: estimated
    records: Counter = field(default_factory=Counter)  # records the cached generations already yield

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "cached": dict(self.cached),
            "to_run_exact": dict(self.to_run),
            "to_run_estimated": dict(self.to_run_estimated),
            "records_from_cache": dict(self.records),
            "total_cached": sum(self.cached.values()),
            "total_to_run": sum(self.to_run.values()) + sum(self.to_run_estimated.values()),
        }


@dataclass
class Plan:
    """What a build would do, before it does it."""

    spec: Spec
    model: str
    quotas: dict[tuple[str, str], int]
    tasks: list[Task]  # first-stage tasks, exact
    stages: dict[str, StageEstimate]
    principles: dict[str, dict]
    prices: tuple[float, float]
    cache: CacheEstimate | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.stages.values())

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.stages.values())

    @property
    def calls(self) -> int:
        return sum(s.tasks for s in self.stages.values())

    @property
    def cost_usd(self) -> float:
        return cost_usd(self.prices, self.input_tokens, self.output_tokens)

    def to_dict(self) -> dict:
        return {
            "spec": {"name": self.spec.name, "version": self.spec.version, "sha256": self.spec.sha256},
            "model": self.model,
            "context": self.spec.corpus.context,
            "budget_tokens": self.spec.corpus.budget.tokens,
            "stages": {
                s: {**vars(e), "exact": s in ("ideas", "scenarios")} for s, e in self.stages.items()
            },
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "prices_per_mtok": list(self.prices),
            "principles": self.principles,
            "cache": self.cache.to_dict() if self.cache else None,
            "notes": self.notes,
        }


def make_plan(spec: Spec, *, model: str | None = None, cache=None, ctx: Context | None = None) -> Plan:
    """The plan for ``spec`` with the LLM id ``model``; ``cache`` (a specc.generate.cache.Cache) makes it incremental."""
    from specc.stages import llm_id

    ctx = ctx or Context.create(spec, model or llm_id(spec))
    tok = ctx.tokenizer
    quotas = compute_quotas(spec)
    sizing = ctx.sizing()
    first = Pipeline(ctx).first_tasks(0)
    stages = {s: StageEstimate() for s in STAGE_ORDER}
    if not ctx.judge:
        del stages["judge"]
    per: dict[str, dict] = {
        p.id: {"ideas_tasks": 0, "documents": 0, "scenarios_tasks": 0, "demonstrations": 0,
               "wanted_documents": sizing[p.id].wanted_documents,
               "wanted_demonstrations": sizing[p.id].wanted_demonstrations,
               "expected_document_tokens": 0, "expected_demonstration_tokens": 0,
               "quota_document_tokens": quotas.get((p.id, "document"), 0),
               "quota_demonstration_tokens": quotas.get((p.id, "demonstration"), 0)}
        for p in spec.principles
    }

    def out_est(stage: str, kind: str | None = None) -> int:
        return int(max_tokens_for(spec, stage, kind) * FILL[stage])

    doc_tokens = expected_document_tokens(spec)
    demo_tokens = {k: expected_demonstration_tokens(ctx, k) for k in spec.corpus.demonstrations.kinds}
    for t in first:
        e = stages[t.stage]
        e.tasks += 1
        e.input_tokens += count_messages(tok, list(t.messages))
        e.output_tokens += out_est(t.stage, t.meta.get("kind"))
        n_children = children_per(ctx, t)
        for stage, child in downstream_tasks(ctx, t).items():
            n = n_children.get(stage, 0)
            stages[stage].tasks += n
            stages[stage].input_tokens += n * count_messages(tok, list(child.messages))
            stages[stage].output_tokens += n * out_est(stage)
        row = per[t.principle_id]
        if t.stage == "ideas":
            row["ideas_tasks"] += 1
            row["documents"] += t.meta["k"]
            row["expected_document_tokens"] += t.meta["k"] * doc_tokens
        else:
            row["scenarios_tasks"] += 1
            row["demonstrations"] += t.meta["n"]
            row["expected_demonstration_tokens"] += t.meta["n"] * demo_tokens[t.meta["kind"]]

    kinds = usable_kinds(spec)
    typical = {"document": doc_tokens,
               "demonstration": round(sum(demo_tokens[k] for k in kinds) / len(kinds)) if kinds else 0}
    notes = [
        f"task counts follow the quotas: each principle gets about {OVERSHOOT:g} x its quota in records "
        f"(a document ~{typical['document']:,} tokens, a demonstration ~{typical['demonstration']:,}), "
        "since curation drops some; a larger budget only adds tasks",
        "ideas and scenarios task counts and prompt tokens are exact; downstream counts assume every "
        "ideas/scenarios answer yields the number asked for; output tokens assume answers fill "
        f"{', '.join(f'{s} {int(f * 100)}%' for s, f in FILL.items())} of max_tokens",
        f"top-up rounds (up to {spec.corpus.rounds}) may add tasks when a quota is short after curation; not included",
    ]
    if spec.corpus.context == "spec":
        notes.append("corpus.context is `spec`: every prompt carries the whole spec, so any edit regenerates everything")
    notes += _sizing_notes(spec, per, typical)

    prices = price_for(spec.generator.model if model is None else _bare(model), spec.generator.prices)
    plan = Plan(spec, ctx.model, quotas, first, stages, per, prices, notes=notes)
    if cache is not None:
        plan.cache = walk_cache(ctx, cache, first)
    return plan


def _sizing_notes(spec: Spec, per: dict[str, dict], typical: dict[str, int]) -> list[str]:
    """Where the planned records cannot meet a quota: too few slots, or a quota smaller than one record."""
    notes = []
    room = {"document": "add genres or raise ideas_per_genre", "demonstration": "add kinds or raise per_kind"}
    if any(r["quota_demonstration_tokens"] for r in per.values()) and not usable_kinds(spec):
        notes.append("no demonstration can be generated: `conflict` is the only kind and needs a second principle")
    for pid, row in per.items():
        for kind, plural in (("document", "documents"), ("demonstration", "demonstrations")):
            quota, wanted, planned = row[f"quota_{kind}_tokens"], row[f"wanted_{plural}"], row[plural]
            if 0 < planned < wanted:
                notes.append(f"{pid}: its {kind} quota of {quota:,} tokens wants about {wanted:,} {plural}, "
                             f"but only {planned:,} fit in the slots: {room[kind]} (or rely on top-up rounds)")
            if 0 < quota < typical[kind] / 2:
                # Budget selection never takes a record that overshoots its quota more than it fills it.
                notes.append(f"{pid}: its {kind} quota of {quota:,} tokens is under half a typical {kind} "
                             f"(~{typical[kind]:,} tokens), so budget selection may keep none: "
                             "raise the budget or this principle's weight")
    return notes


def _bare(model_id: str) -> str:
    return model_id.split(":", 1)[-1].split("@", 1)[0]


def walk_cache(ctx: Context, cache, first: list[Task]) -> CacheEstimate:
    """Follow cached results through the same parsing a build does; count what would still run."""
    est = CacheEstimate(str(getattr(cache, "path", "")))
    pipe = Pipeline(ctx)
    stack = list(reversed(first))
    while stack:
        task = stack.pop()
        gen = cache.get(task.key)
        if gen is None:
            est.to_run[task.stage] += 1
            est.to_run_estimated.update(children_per(ctx, task))
            continue
        est.cached[task.stage] += 1
        stack.extend(reversed(list(pipe.on_result(task, gen) or [])))
    est.records.update(r.kind for r in pipe.records)
    return est


def plan_topup(
    spec: Spec,
    shortfall: dict[tuple[str, str], int],
    round: int,
    *,
    model: str | None = None,
    records: list[Record] = (),
    ctx: Context | None = None,
) -> list[Task]:
    """Extra first-stage tasks for the quotas that curation left short, and only those.

    Each carries ``round`` in its prompt and seed, so its key is new; how many comes from
    the tokens missing and the average size of what this principle produced so far. Its
    slots continue the principle's rotation past the genres and kinds round 0 used.
    """
    from specc.stages import llm_id

    ctx = ctx or Context.create(spec, model or llm_id(spec))
    docs, demos = spec.corpus.documents, spec.corpus.demonstrations
    kinds = usable_kinds(spec)
    index = {p.id: i for i, p in enumerate(spec.principles)}
    sizing = ctx.sizing()
    genres_for: dict[str, list[tuple[str, int]]] = {}
    kinds_for: dict[str, list[tuple[str, int]]] = {}
    for (pid, kind), missing in sorted(shortfall.items()):
        if missing <= 0 or pid not in index:
            continue
        sizes = [r.tokens for r in records if r.principle_id == pid and r.kind == kind and r.tokens]
        default = expected_document_tokens(spec) if kind == "document" else demos.max_tokens * FILL["reply"] + 60
        avg = sum(sizes) / len(sizes) if sizes else default
        if missing < avg / 2:
            # Budget selection never takes a record that overshoots more than it fills, so
            # a gap under half a typical record cannot be closed by generating more.
            continue
        # 1.5x: some of what is generated is dropped again by parsing and curation.
        n = math.ceil(1.5 * missing / max(avg, 1))
        if kind == "document":
            items, per_call, used, out = docs.genres, docs.ideas_per_genre, len(sizing[pid].genres), genres_for
        else:
            items, per_call, used, out = kinds, demos.per_kind, len(sizing[pid].kinds), kinds_for
        if not items:
            continue
        calls = min(len(items), math.ceil(n / per_call))
        start = rotation_offsets(index[pid] + 1, len(items))[-1] + used + (round - 1) * calls
        out[pid] = list(fill_slots(items, start, n, per_call))
    return docs_mod.ideas_tasks(ctx, round, genres_for) + demos_mod.scenario_tasks(ctx, round, kinds_for)


# ---------------------------------------------------------------- diff

# Sections that change what curation or emit does, but no prompt.
CURATION_ONLY = ("corpus.dedup", "corpus.decontamination", "corpus.filters",
                 "corpus.rounds", "output", "version", "description", "license", "name")
# Sections that change no prompt but the quotas, and so how many tasks run (counted in the calls).
RESIZING = ("corpus.budget", "corpus.mix")


def _section(spec: Spec, dotted: str):
    obj = spec
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj


@dataclass
class SpecDiff:
    """Which principles and stages a rebuild would regenerate, and about how many calls that is."""

    principles: dict[str, dict]
    templates: dict[str, dict]
    curation_only: list[str]
    calls: int
    first_stage_calls: int
    context: str
    resized: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "principles": self.principles,
            "templates": self.templates,
            "curation_only": self.curation_only,
            "resized": self.resized,
            "calls": self.calls,
            "first_stage_calls_exact": self.first_stage_calls,
            "context": self.context,
            "notes": [
                "first-stage (ideas, scenarios) changes are exact task keys; calls below them assume each "
                "answer yields the number asked for; without a cache, an unchanged key is assumed cached"
            ],
        }


def _ident(t: Task) -> tuple:
    return (t.stage, t.principle_id, t.meta.get("genre") or t.meta.get("kind"), t.meta.get("round", 0))


def _index(ctx: Context) -> dict[tuple, tuple[Task, dict[str, str], dict[str, int]]]:
    out = {}
    for t in Pipeline(ctx).first_tasks(0):
        out[_ident(t)] = (t, {s: c.key for s, c in downstream_tasks(ctx, t).items()}, children_per(ctx, t))
    return out


def diff_specs(old: Spec, new: Spec, *, model_old: str | None = None, model_new: str | None = None) -> SpecDiff:
    """Compare two specs by the keys of their tasks: what a rebuild of ``new`` over ``old``'s cache regenerates."""
    from specc.stages import llm_id

    ctx_old = Context.create(old, model_old or llm_id(old))
    ctx_new = Context.create(new, model_new or llm_id(new))
    before, after = _index(ctx_old), _index(ctx_new)
    old_p = {p.id: p.model_dump(mode="json") for p in old.principles}
    principles: dict[str, dict] = {}
    for p in new.principles:
        status = "added" if p.id not in old_p else ("edited" if old_p[p.id] != p.model_dump(mode="json") else "unchanged")
        principles[p.id] = {"status": status, "stages": [], "changes": [], "calls": 0}
    for pid in old_p:
        if pid not in principles:
            principles[pid] = {"status": "removed", "stages": [], "changes": [], "calls": 0}

    first_calls = 0
    for ident, (task, fps, per) in after.items():
        row = principles[task.principle_id]
        prev = before.get(ident)
        if prev is None or prev[0].key != task.key:
            first_calls += 1
            row["calls"] += 1 + sum(per.values())
            row["changes"].append(f"{task.stage}[{ident[2]}]")
            row["stages"] += [task.stage, *fps]
            continue
        _, old_fps, old_per = prev
        regen: list[str] = []
        for stage in ("document", "reply", "judge"):
            # A judge grades the reply, so a regenerated reply regenerates its judge too.
            if stage in fps and (fps[stage] != old_fps.get(stage) or (stage == "judge" and "reply" in regen)):
                regen.append(stage)
        if regen:
            row["changes"].append(f"{regen[0]}[{ident[2]}]")
            row["stages"] += regen
        # A larger quota can take more answers of a cached call: only those are new.
        more = {s: n - old_per.get(s, 0) for s, n in per.items() if s not in regen and n > old_per.get(s, 0)}
        if more and not regen:
            row["changes"].append(f"{next(iter(more))}[{ident[2]}]+{next(iter(more.values()))}")
        row["stages"] += list(more)
        row["calls"] += sum(per.get(s, 0) for s in regen) + sum(more.values())
    for row in principles.values():
        row["stages"] = [s for s in STAGE_ORDER if s in set(row["stages"])]
    templates = {
        s: {"old": ctx_old.templates[s].hash, "new": ctx_new.templates[s].hash}
        for s in STAGE_ORDER
        if ctx_old.templates[s].hash != ctx_new.templates[s].hash
    }
    curation = [name for name in CURATION_ONLY if _section(old, name) != _section(new, name)]
    resized = [name for name in RESIZING if _section(old, name) != _section(new, name)]
    return SpecDiff(principles, templates, curation, sum(r["calls"] for r in principles.values()), first_calls,
                    new.corpus.context, resized)
