"""Facets: aspects of a principle the generator proposes, one lens per call, beyond its sub-rules and examples."""

from __future__ import annotations

import json

from pydantic import BaseModel

from specc.generate.base import Generation
from specc.plan.sizing import LENSES
from specc.records import Task
from specc.spec.schema import Principle
from specc.stages.base import Input, Stage, stub_words
from specc.stages.context import Context, max_tokens_for
from specc.stages.items import ProposedFacet, parse_facets

LENS_DESCRIPTIONS = {
    "behaviours": "the concrete things the assistant does, or refuses to do, because of this principle",
    "values": "the values and reasons behind it: what it protects, for whom, and why that matters",
    "situations": "situations where it matters, including ones where it is not obvious that it applies",
    "mistakes": "the mistakes it prevents: what goes wrong for people when an assistant behaves otherwise",
}


def lens_of(slot: int) -> tuple[str, int]:
    """(lens, batch) of facet call ``slot``: the lenses in turn, then again as a further batch."""
    return LENSES[slot % len(LENSES)], slot // len(LENSES)


class FacetsInput(Input):
    slot: int
    lens: str
    batch: int = 0


class FacetsResult(BaseModel):
    facets: list[ProposedFacet]
    invalid: int = 0


class FacetsStage(Stage[FacetsInput, FacetsResult]):
    name = "facets"
    json_mode = True
    lists = True

    def render(self, ctx: Context, p: Principle, inp: FacetsInput) -> Task:
        n = ctx.spec.corpus.facets.per_call
        messages = ctx.templates["facets"].render(
            **ctx.base(p), n=n, lens=inp.lens, lens_description=LENS_DESCRIPTIONS[inp.lens], batch=inp.batch,
        )
        params = ctx.params("facets", max_tokens_for(ctx.spec, "facets"), (p.id, inp.lens, inp.batch), json_mode=True)
        return ctx.task("facets", p, messages, params, inp)

    def parse(self, ctx: Context, task: Task, gen: Generation) -> FacetsResult:
        facets, invalid = parse_facets(gen.text)
        return FacetsResult(facets=facets, invalid=invalid)

    def children(self, pipe, task: Task, result: FacetsResult) -> list[Task]:
        pipe.drop("facets:invalid", result.invalid, task=task)
        return pipe.facets_resolved(task, result.facets)

    def give_up(self, pipe, task: Task, reason: str, text: str = "") -> list[Task]:
        pipe.drop(reason, task=task)
        return pipe.facets_resolved(task, None)

    def stub(self, ctx: Context, task: Task) -> str:
        n = ctx.spec.corpus.facets.per_call
        items = [{"facet": stub_words(f"{task.key}:{i}", 7), "why": stub_words(f"{task.key}:why:{i}", 9)}
                 for i in range(n)]
        return json.dumps({"facets": items})


STAGE = FacetsStage()
