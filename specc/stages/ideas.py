"""Ideas: ``ideas_per_genre`` document ideas per call, for one facet of a principle and one document type."""

from __future__ import annotations

import json

from pydantic import BaseModel

from specc.generate.base import Generation
from specc.records import Task
from specc.spec.schema import Principle
from specc.stages.base import Input, Stage, stub_words
from specc.stages.context import Context, max_tokens_for
from specc.stages.items import Facet
from specc.stages.parsing import Idea, parse_ideas


class IdeasInput(Input):
    slot: int  # the principle's ideas call number: its place in the dedup order
    round: int = 0
    facet: Facet
    doctype: str
    batch: int = 0  # > 0 when this facet has used every document type it has and asks again


class IdeasResult(BaseModel):
    ideas: list[Idea]
    invalid: int = 0


class IdeasStage(Stage[IdeasInput, IdeasResult]):
    name = "ideas"
    json_mode = True
    lists = True

    def render(self, ctx: Context, p: Principle, inp: IdeasInput) -> Task:
        """The prompt asks for ``ideas_per_genre`` ideas whatever the budget: the budget only picks how many calls run."""
        docs = ctx.spec.corpus.documents
        messages = ctx.templates["ideas"].render(
            **ctx.base(p), facet=inp.facet.model_dump(), genre=inp.doctype, k=docs.ideas_per_genre, batch=inp.batch,
            audiences=list(docs.audiences),
        )
        seed = (p.id, inp.facet.id, inp.doctype, inp.batch)
        params = ctx.params("ideas", max_tokens_for(ctx.spec, "ideas"), seed, json_mode=True)
        return ctx.task("ideas", p, messages, params, inp)

    def parse(self, ctx: Context, task: Task, gen: Generation) -> IdeasResult:
        ideas, _, invalid = parse_ideas(gen.text)
        return IdeasResult(ideas=ideas, invalid=invalid)

    def children(self, pipe, task: Task, result: IdeasResult) -> list[Task]:
        pipe.drop("ideas:invalid", result.invalid, task=task)
        return pipe.ideas_resolved(task, result.ideas)

    def give_up(self, pipe, task: Task, reason: str, text: str = "") -> list[Task]:
        pipe.drop(reason, task=task)
        return pipe.ideas_resolved(task, None)

    def stub(self, ctx: Context, task: Task) -> str:
        k = ctx.spec.corpus.documents.ideas_per_genre
        ideas = [{"title": stub_words(f"{task.key}:{i}", 6), "angle": stub_words(f"{task.key}:a{i}", 10),
                  "audience": "general readers", "setting": "a publication, this year"} for i in range(k)]
        return json.dumps({"ideas": ideas})


STAGE = IdeasStage()
