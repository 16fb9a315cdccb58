"""``make_plan``: what a build would run and cost, counted by running the stage code against a stub model.

The walk (``specc.plan.walk``) drives the build's own pipeline: facets, document types,
ideas, documents, scenarios, replies and judges, through the same gates and dedup. With a
cache it follows the cached answers, so what a rebuild would still call is exact down to
the first uncached task, and below it as exact as the stub's well-formed answers make it.
A top-up round is estimated from an assumed share of losses in curation.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from specc.generate.pricing import build_prices, cost_usd
from specc.plan.quotas import compute_quotas
from specc.plan.sizing import (
    FILL,
    OVERSHOOT,
    expected_demonstration_tokens,
    expected_document_tokens,
    usable_kinds,
)
from specc.plan.throughput import Throughput, throughput
from specc.plan.walk import Walk, walk
from specc.spec.schema import Spec
from specc.stages import Context

STAGE_ORDER = ("facets", "doctypes", "ideas", "document", "scenarios", "reply", "judge")
# Share of generated records a build is assumed to lose in parsing and curation, for the top-up estimate.
LOSS = 0.10
TOLERANCE = 0.03  # budget selection's: a quota this close is not topped up


@dataclass
class StageEstimate:
    tasks: int = 0  # calls a build would make
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class Plan:
    """What a build would do, before it does it."""

    spec: Spec
    model: str
    quotas: dict[tuple[str, str], int]
    stages: dict[str, StageEstimate]
    principles: dict[str, dict]
    prices: tuple[float, float]
    topup: StageEstimate = field(default_factory=StageEstimate)  # an estimated top-up round
    cached: Counter = field(default_factory=Counter)  # tasks the cache already holds, per stage
    records_from_cache: Counter = field(default_factory=Counter)
    cache_path: str | None = None
    notes: list[str] = field(default_factory=list)
    # Pairings of this model with the spec's prompts, judge or budget that build badly (specc.spec.advice).
    warnings: list[str] = field(default_factory=list)
    walk: Walk | None = field(default=None, repr=False)
    # The embedded model's speed on this machine (measured from the cache, or the default); None for an endpoint.
    throughput: Throughput | None = None

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.stages.values()) + self.topup.input_tokens

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.stages.values()) + self.topup.output_tokens

    @property
    def calls(self) -> int:
        """Calls a build would make, the estimated top-up round included."""
        return sum(s.tasks for s in self.stages.values()) + self.topup.tasks

    @property
    def cost_usd(self) -> float:
        return cost_usd(self.prices, self.input_tokens, self.output_tokens)

    @property
    def free(self) -> bool:
        """The embedded model: it runs on this machine, so its tokens cost nothing (time is what it costs)."""
        return self.throughput is not None

    @property
    def wall_seconds(self) -> float | None:
        """How long the embedded model takes for the output tokens still to generate; None for an endpoint."""
        return None if self.throughput is None else self.throughput.seconds(self.output_tokens)

    def to_dict(self) -> dict:
        return {
            "spec": {"name": self.spec.name, "version": self.spec.version, "sha256": self.spec.sha256},
            "model": self.model,
            "context": self.spec.corpus.context,
            "budget_tokens": self.spec.corpus.budget.tokens,
            "stages": {s: vars(e) for s, e in self.stages.items()},
            "topup_estimate": vars(self.topup),
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "prices_per_mtok": list(self.prices),
            "free": self.free,
            "wall_time": None if self.throughput is None else {
                "seconds": round(self.wall_seconds),
                "output_tokens": self.output_tokens,
                "tokens_per_s": round(self.throughput.tokens_per_s, 2),
                "source": "measured" if self.throughput.measured else "default",
                "measured_calls": self.throughput.calls,
            },
            "facets": sum(r["facets"] for r in self.principles.values()),
            "doc_types": sum(r["doc_types"] for r in self.principles.values()),
            "principles": self.principles,
            "cache": None if self.cache_path is None else {
                "path": self.cache_path, "cached": dict(self.cached), "total_cached": sum(self.cached.values()),
                "records_from_cache": dict(self.records_from_cache),
            },
            "notes": self.notes,
            "warnings": self.warnings,
        }


def make_plan(spec: Spec, *, model: str | None = None, cache=None, ctx: Context | None = None) -> Plan:
    """The plan for ``spec`` with the LLM id ``model``; ``cache`` (a specc.generate.cache.Cache) makes it incremental."""
    from specc.stages import llm_id

    ctx = ctx or Context.create(spec, model or llm_id(spec))
    w = walk(ctx, cache)
    quotas = compute_quotas(spec)
    sizing = ctx.sizing()
    stages = {s: StageEstimate(w.to_run[s], 0, 0) for s in STAGE_ORDER}
    for s, e in stages.items():
        share = w.to_run[s] / w.tasks[s] if w.tasks[s] else 0
        e.input_tokens = round(w.input_tokens(s) * share)
        e.output_tokens = round(w.max_tokens[s] * FILL[s] * share)
    if not ctx.judge:
        del stages["judge"]

    kinds = usable_kinds(spec)
    typical = {
        "document": expected_document_tokens(spec),
        "demonstration": (round(sum(expected_demonstration_tokens(spec, ctx.tokenizer, k) for k in kinds) / len(kinds))
                          if kinds else 0),
    }
    made = Counter((r.principle_id, r.kind) for r in w.pipe.records)
    per: dict[str, dict] = {}
    for p in spec.principles:
        st, s = w.pipe.states[p.id], sizing[p.id]
        facets = st.facets or []
        per[p.id] = {
            "facets": len(facets),
            "facets_generated": sum(1 for f in facets if f.source == "generated"),
            "doc_types": len(st.types_used),
            "ideas_calls": st.ideas_calls,
            "scenario_calls": st.scenario_calls,
            "wanted_documents": s.documents,
            "wanted_demonstrations": s.demonstrations,
            "documents": made[(p.id, "document")],
            "demonstrations": made[(p.id, "demonstration")],
            "expected_document_tokens": made[(p.id, "document")] * typical["document"],
            "expected_demonstration_tokens": made[(p.id, "demonstration")] * typical["demonstration"],
            "quota_document_tokens": quotas.get((p.id, "document"), 0),
            "quota_demonstration_tokens": quotas.get((p.id, "demonstration"), 0),
        }
    topup = _topup_estimate(ctx, per, typical, w)
    notes = [
        f"task counts follow the quotas: each principle gets about {OVERSHOOT:g} x its quota in records "
        f"(a document ~{typical['document']:,} tokens, a demonstration ~{typical['demonstration']:,}), "
        "through about √calls facets; a larger budget only adds tasks",
        "counted by running the build's stage code against a stub model that answers every call in shape"
        + (" and the cache where it has the answer" if cache is not None else "")
        + "; output tokens assume answers fill "
        + ", ".join(f"{s} {int(f * 100)}%" for s, f in FILL.items()) + " of max_tokens",
        f"the top-up estimate assumes curation drops {LOSS:.0%} of what is generated "
        f"(up to {spec.corpus.rounds} round(s) run when a quota is short)",
    ]
    if spec.corpus.context == "spec":
        notes.append("corpus.context is `spec`: every prompt carries the whole spec, so any edit regenerates everything")
    notes += _sizing_notes(spec, per, typical)
    if spec.generator.batch:
        notes.append("priced for the endpoint's Batch API (generator.batch or --batch): half the list price")
    prices = build_prices(spec.generator, spec.generator.model if model is None else _bare(model))
    from specc.spec.advice import embedded, warnings

    plan = Plan(spec, ctx.model, quotas, stages, per, prices, topup=topup, notes=notes, walk=w,
                throughput=throughput(cache, ctx.model) if embedded(ctx.model) else None)
    wall = plan.wall_seconds
    plan.warnings = warnings(spec, ctx.model, minutes=None if wall is None else wall / 60)
    if cache is not None:
        plan.cache_path = str(getattr(cache, "path", ""))
        plan.cached = Counter(w.cached)
        cached_records = Counter(r.kind for r in w.pipe.records if r.meta.get("task_key") not in w.new_keys)
        plan.records_from_cache = cached_records
    return plan


def _topup_estimate(ctx: Context, per: dict[str, dict], typical: dict[str, int], w: Walk) -> StageEstimate:
    """One top-up round for the quotas that ``LOSS`` would leave short (calls and tokens by the walk's averages)."""
    spec = ctx.spec
    docs, demos = spec.corpus.documents, spec.corpus.demonstrations
    calls: Counter = Counter()
    for row in per.values():
        for kind, plural in (("document", "documents"), ("demonstration", "demonstrations")):
            quota, made = row[f"quota_{kind}_tokens"], row[plural] * typical[kind]
            missing = quota - made * (1 - LOSS)
            if quota <= 0 or missing <= TOLERANCE * quota or missing < typical[kind] / 2:
                continue
            n = math.ceil(1.5 * missing / max(typical[kind], 1))
            if kind == "document":
                calls.update({"ideas": math.ceil(n / docs.ideas_per_genre), "document": n})
            elif usable_kinds(spec):
                calls.update({"scenarios": math.ceil(n / demos.per_kind), "reply": n, **({"judge": n} if ctx.judge else {})})
    est = StageEstimate(sum(calls.values()))
    for s, n in calls.items():
        if w.tasks[s]:
            est.input_tokens += round(w.input_tokens(s) / w.tasks[s] * n)
            est.output_tokens += round(w.max_tokens[s] / w.tasks[s] * FILL[s] * n)
    return est


def _sizing_notes(spec: Spec, per: dict[str, dict], typical: dict[str, int]) -> list[str]:
    """Quotas smaller than one record, and specs that cannot make a kind at all."""
    notes = []
    if any(r["quota_demonstration_tokens"] for r in per.values()) and not usable_kinds(spec):
        notes.append("no demonstration can be generated: `conflict` is the only kind and needs a second principle")
    for pid, row in per.items():
        for kind in ("document", "demonstration"):
            quota = row[f"quota_{kind}_tokens"]
            if 0 < quota < typical[kind] / 2:
                # Budget selection never takes a record that overshoots its quota more than it fills it.
                notes.append(f"{pid}: its {kind} quota of {quota:,} tokens is under half a typical {kind} "
                             f"(~{typical[kind]:,} tokens), so budget selection may keep none: "
                             "raise the budget or this principle's weight")
    return notes


def _bare(model_id: str) -> str:
    return model_id.split(":", 1)[-1].split("@", 1)[0]
