"""``diff_specs``: which principles and stages an edit regenerates, and how many calls a rebuild makes.

Both specs are walked with the build's stage code (``specc.plan.walk``), over the cache if
there is one and the stub model elsewhere. With a cache, a rebuild of ``new`` calls the
task keys of its walk the cache lacks; without one, ``old`` is taken as built, and a
rebuild calls the keys of ``new``'s walk that ``old``'s walk does not reach.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from specc.plan.walk import walk
from specc.spec.schema import Spec
from specc.stages import Context

STAGE_ORDER = ("facets", "doctypes", "ideas", "document", "scenarios", "reply", "judge")
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
    """Which principles and stages a rebuild would regenerate, and how many calls that is."""

    principles: dict[str, dict]
    templates: dict[str, dict]
    curation_only: list[str]
    calls: int
    calls_by_stage: dict[str, int]
    context: str
    resized: list[str] = field(default_factory=list)
    budget: int = 0
    cache: str | None = None

    def to_dict(self) -> dict:
        return {
            "principles": self.principles,
            "templates": self.templates,
            "curation_only": self.curation_only,
            "resized": self.resized,
            "calls": self.calls,
            "calls_by_stage": self.calls_by_stage,
            "budget_tokens": self.budget,
            "cache": self.cache,
            "context": self.context,
            "notes": [
                "counted by running the build's stage code on both specs against a stub model"
                + (" and the cache" if self.cache else "")
                + ": a rebuild of the new spec calls the tasks neither the old spec's build nor the cache holds"
            ],
        }


def diff_specs(old: Spec, new: Spec, *, model_old: str | None = None, model_new: str | None = None,
               cache=None) -> SpecDiff:
    """What a rebuild of ``new`` over ``old``'s build (and ``cache``, if given) regenerates."""
    from specc.stages import llm_id

    ctx_old = Context.create(old, model_old or llm_id(old))
    ctx_new = Context.create(new, model_new or llm_id(new))
    before, after = walk(ctx_old, cache), walk(ctx_new, cache)
    old_p = {p.id: p.model_dump(mode="json") for p in old.principles}
    principles: dict[str, dict] = {}
    for p in new.principles:
        status = "added" if p.id not in old_p else ("edited" if old_p[p.id] != p.model_dump(mode="json") else "unchanged")
        principles[p.id] = {"status": status, "stages": [], "changes": [], "calls": 0}
    for pid in old_p:
        if pid not in principles:
            principles[pid] = {"status": "removed", "stages": [], "changes": [], "calls": 0}

    per: dict[str, Counter] = {}
    for key, (stage, pid) in after.new_keys.items():
        # With a cache, what it lacks is exactly what a rebuild calls; without one, the old
        # spec's build is taken as done, so only what its walk does not reach is new.
        if cache is not None or key not in before.keys:
            per.setdefault(pid, Counter())[stage] += 1
    by_stage: Counter = Counter()
    for pid, c in per.items():
        row = principles[pid]
        row["stages"] = [s for s in STAGE_ORDER if c[s]]
        row["changes"] = [f"{s} {c[s]}" for s in STAGE_ORDER if c[s]]
        row["calls"] = sum(c.values())
        by_stage.update(c)
    templates = {
        s: {"old": ctx_old.templates[s].hash, "new": ctx_new.templates[s].hash}
        for s in STAGE_ORDER
        if ctx_old.templates[s].hash != ctx_new.templates[s].hash
    }
    curation = [name for name in CURATION_ONLY if _section(old, name) != _section(new, name)]
    resized = [name for name in RESIZING if _section(old, name) != _section(new, name)]
    return SpecDiff(principles, templates, curation, sum(by_stage.values()),
                    {s: by_stage[s] for s in STAGE_ORDER if by_stage[s]}, new.corpus.context, resized,
                    new.corpus.budget.tokens, str(getattr(cache, "path", "")) if cache is not None else None)
