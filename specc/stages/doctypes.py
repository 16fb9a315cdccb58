"""Document types: further realistic kinds of text for one facet, when the genre catalogue runs out."""

from __future__ import annotations

import json

from pydantic import BaseModel

from specc.generate.base import Generation
from specc.records import Task
from specc.spec.schema import Principle
from specc.stages.base import Input, Stage, stub_words
from specc.stages.context import Context, max_tokens_for
from specc.stages.items import Facet, parse_doctypes


class DocTypesInput(Input):
    facet_index: int
    facet: Facet
    batch: int = 0


class DocTypesResult(BaseModel):
    types: list[str]
    invalid: int = 0


class DocTypesStage(Stage[DocTypesInput, DocTypesResult]):
    name = "doctypes"
    json_mode = True
    lists = True

    def render(self, ctx: Context, p: Principle, inp: DocTypesInput) -> Task:
        docs = ctx.spec.corpus.documents
        messages = ctx.templates["doctypes"].render(
            **ctx.base(p), facet=inp.facet.model_dump(), genres=list(docs.genres), n=docs.types_per_call,
            batch=inp.batch,
        )
        seed = (p.id, inp.facet.id, inp.batch)
        return ctx.task("doctypes", p, messages, ctx.params("doctypes", max_tokens_for(ctx.spec, "doctypes"), seed,
                                                           json_mode=True), inp)

    def parse(self, ctx: Context, task: Task, gen: Generation) -> DocTypesResult:
        types, invalid = parse_doctypes(gen.text)
        return DocTypesResult(types=[t.name for t in types], invalid=invalid)

    def children(self, pipe, task: Task, result: DocTypesResult) -> list[Task]:
        pipe.drop("doctypes:invalid", result.invalid, task=task)
        return pipe.types_resolved(task, result.types)

    def give_up(self, pipe, task: Task, reason: str, text: str = "") -> list[Task]:
        pipe.drop(reason, task=task)
        return pipe.types_resolved(task, None)

    def stub(self, ctx: Context, task: Task) -> str:
        n = ctx.spec.corpus.documents.types_per_call
        return json.dumps({"types": [stub_words(f"{task.key}:{i}", 2) + " notes" for i in range(n)]})


STAGE = DocTypesStage()
