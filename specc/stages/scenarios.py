"""Scenarios: ``per_kind`` situations per call, for one facet of a principle and one demonstration kind."""

from __future__ import annotations

import json

from pydantic import BaseModel

from specc.generate.base import Generation
from specc.records import Task
from specc.spec.schema import Principle, Spec
from specc.stages import format_example, format_principle, partner_of
from specc.stages.base import Input, Stage, stub_words
from specc.stages.context import Context, max_tokens_for
from specc.stages.items import Facet
from specc.stages.parsing import Scenario, parse_scenarios

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


def pair(ctx: Context, p: Principle, kind: str, *, examples: bool = True) -> tuple[Principle | None, dict]:
    """The conflict partner of ``p`` (for a ``conflict`` kind) and its template variables (shared: not to be changed)."""
    key = (p.id, kind == "conflict", examples)
    found = ctx._pairs.get(key)
    if found is None:
        partner = partner_of(ctx.spec, p) if kind == "conflict" else None
        found = ctx._pairs[key] = (partner, {
            "partner": partner.model_dump(mode="json", exclude={"examples"}) if partner else None,
            "partner_text": format_principle(partner, examples=examples) if partner else "",
        })
    return found


class ScenariosInput(Input):
    slot: int  # the principle's scenarios call number: its place in the dedup order
    round: int = 0
    facet: Facet
    kind: str
    batch: int = 0  # > 0 when every (facet, kind) pair has had a call and this one asks again


class ScenariosResult(BaseModel):
    scenarios: list[Scenario]
    invalid: int = 0


class ScenariosStage(Stage[ScenariosInput, ScenariosResult]):
    name = "scenarios"
    json_mode = True
    lists = True

    def render(self, ctx: Context, p: Principle, inp: ScenariosInput) -> Task:
        """The prompt asks for ``per_kind`` scenarios whatever the budget: the budget only picks how many calls run."""
        demos = ctx.spec.corpus.demonstrations
        # Examples reach the scenario writer only through examples_text, under seed_with_examples.
        _, pair_vars = pair(ctx, p, inp.kind, examples=False)
        seeds = [e for e in p.examples if not e.holdout] if demos.seed_with_examples else []
        messages = ctx.templates["scenarios"].render(
            **ctx.base(p, examples=False), **pair_vars, facet=inp.facet.model_dump(), kind=inp.kind,
            kind_description=KIND_DESCRIPTIONS[inp.kind], n=demos.per_kind, n_system=n_system_for(ctx.spec, inp.kind),
            examples_text="\n".join(format_example(e) for e in seeds), batch=inp.batch,
        )
        seed = (p.id, inp.facet.id, inp.kind, inp.batch)
        params = ctx.params("scenarios", max_tokens_for(ctx.spec, "scenarios", inp.kind), seed, json_mode=True)
        return ctx.task("scenarios", p, messages, params, inp)

    def parse(self, ctx: Context, task: Task, gen: Generation) -> ScenariosResult:
        scenarios, _, invalid = parse_scenarios(gen.text, task.input.kind)
        return ScenariosResult(scenarios=scenarios, invalid=invalid)

    def children(self, pipe, task: Task, result: ScenariosResult) -> list[Task]:
        pipe.drop("scenarios:invalid", result.invalid, task=task)
        return pipe.scenarios_resolved(task, result.scenarios)

    def give_up(self, pipe, task: Task, reason: str, text: str = "") -> list[Task]:
        pipe.drop(reason, task=task)
        return pipe.scenarios_resolved(task, None)

    def stub(self, ctx: Context, task: Task) -> str:
        demos = ctx.spec.corpus.demonstrations
        n_sys = n_system_for(ctx.spec, task.input.kind)
        out = []
        for i in range(demos.per_kind):
            turns = [{"role": "user", "content": stub_words(f"{task.key}:{i}", 24) + "?"}]
            if task.input.kind == "multi_turn":
                turns = [{"role": "user", "content": stub_words(f"{task.key}:u{i}", 12)},
                         {"role": "assistant", "content": stub_words(f"{task.key}:a{i}", 12)}] + turns
            out.append({"system": stub_words(f"{task.key}:s{i}", 8) if i < n_sys else None, "turns": turns})
        return json.dumps({"scenarios": out})


STAGE = ScenariosStage()
