"""One task of every stage, rendered by the real stage code from representative inputs, with no LLM.

``specc validate`` renders these to catch a broken template or tokenizer before a build
would stop at it; the tests use them to look at every stage's prompt.
"""

from __future__ import annotations

from specc.records import Task
from specc.stages.context import Context


def one_task_per_stage(ctx: Context, pid: str | None = None, kind: str | None = None, facet: int = 1) -> dict[str, Task]:
    """{stage: a task} for principle ``pid`` (default: the first), about its ``facet``-th given facet."""
    from specc.stages.doctypes import DocTypesInput
    from specc.stages.document import DocumentInput
    from specc.stages.facets import FacetsInput
    from specc.stages.ideas import IdeasInput
    from specc.stages.items import given_facets
    from specc.stages.judge import JudgeInput
    from specc.stages.parsing import Idea, Scenario
    from specc.stages.pipeline import all_stages
    from specc.stages.reply import ReplyInput
    from specc.stages.scenarios import ScenariosInput

    spec = ctx.spec
    p = ctx.principle(pid) if pid else spec.principles[0]
    kinds = list(spec.corpus.demonstrations.kinds)
    if kind is None:  # a conflict renders the most: both principles
        kind = "conflict" if "conflict" in kinds and len(spec.principles) > 1 else kinds[0]
    facets = given_facets(p)
    f = facets[min(facet, len(facets) - 1)]
    doctype = spec.corpus.documents.genres[0]
    idea = Idea(title=f"How {spec.assistant.name} handled a hard case", angle="what it did and why",
                audience="general readers", setting="a publication, this year")
    sc = Scenario.model_validate({"system": "You help the customers of a bicycle shop.",
                                  "turns": [{"role": "user", "content": "Can you help me with this?"}]})
    inputs = {
        "facets": FacetsInput(slot=0, lens="values"),
        "doctypes": DocTypesInput(facet_index=facets.index(f), facet=f),
        "ideas": IdeasInput(slot=0, facet=f, doctype=doctype),
        "document": DocumentInput(facet=f, doctype=doctype, idea=idea),
        "scenarios": ScenariosInput(slot=0, facet=f, kind=kind),
        "reply": ReplyInput(facet=f, kind=kind, scenario=sc),
        "judge": JudgeInput(facet=f, kind=kind, scenario=sc, reply="A reply.", reply_key="", reply_template_hash=""),
    }
    stages = all_stages()
    return {name: stages[name].render(ctx, p, inp) for name, inp in inputs.items()}
