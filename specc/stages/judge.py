"""The judge: grades a demonstration against its principle; a pass becomes a record, anything else is dropped."""

from __future__ import annotations

import json

from pydantic import BaseModel

from specc.generate.base import Generation
from specc.records import Task, sha256_hex
from specc.spec.schema import Principle
from specc.stages.base import Input, Stage
from specc.stages.context import Context, max_tokens_for
from specc.stages.items import Facet
from specc.stages.parsing import Scenario
from specc.stages.reply import demo_meta, demo_record
from specc.stages.verdict import parse_verdict


class JudgeInput(Input):
    """A demonstration awaiting its verdict: the scenario, the reply, and where the reply came from."""

    round: int = 0
    facet: Facet
    kind: str
    scenario: Scenario
    reply: str
    reply_key: str
    reply_template_hash: str
    finish_reason: str = "stop"
    parent_key: str = ""
    brief: tuple[str, ...] = ()  # the reply prompt's own lines, for the record (Record.brief)


class JudgeResult(BaseModel):
    verdict: str
    reason: str = ""


class JudgeStage(Stage[JudgeInput, JudgeResult]):
    name = "judge"
    json_mode = True

    def render(self, ctx: Context, p: Principle, inp: JudgeInput) -> Task:
        from specc.stages.scenarios import pair

        _, pair_vars = pair(ctx, p, inp.kind)
        messages = ctx.templates["judge"].render(
            **ctx.base(p), **pair_vars, operator=inp.scenario.system or "",
            turns=[t.model_dump() for t in inp.scenario.turns], reply=inp.reply,
        )
        seed = (p.id, inp.kind, inp.scenario.identity(), sha256_hex(inp.reply)[:16])
        return ctx.task("judge", p, messages, ctx.params("judge", max_tokens_for(ctx.spec, "judge"), seed, json_mode=True),
                        inp)

    def parse(self, ctx: Context, task: Task, gen: Generation) -> JudgeResult:
        v = parse_verdict(gen.text)
        return JudgeResult(verdict=v.verdict, reason=v.reason)

    def _row(self, pipe, task: Task, judged: dict | None, **kw):
        ctx, inp = pipe.ctx, task.input
        meta = demo_meta(ctx, task.principle_id, inp, task_key=inp.reply_key, template_hash=inp.reply_template_hash,
                         finish_reason=inp.finish_reason)
        if judged is not None:
            meta["judge"] = judged
        messages = inp.scenario.messages() + [{"role": "assistant", "content": inp.reply}]
        return demo_record(ctx, task.principle_id, inp, messages, meta, **kw)

    def children(self, pipe, task: Task, result: JudgeResult) -> list[Task]:
        judged = {"verdict": result.verdict, "reason": result.reason, "task_key": task.key,
                  "template_hash": task.template_hash}
        if result.verdict != "pass":
            row = self._row(pipe, task, judged, id=sha256_hex(["judge", task.key])[:32])
            pipe.drop("judge:fail", task=task, row=row)
            return []
        pipe.add(self._row(pipe, task, judged, brief=task.input.brief))
        return []

    def give_up(self, pipe, task: Task, reason: str, text: str = "") -> list[Task]:
        judged = {"verdict": None, "reason": text.strip()[:500], "task_key": task.key, "template_hash": task.template_hash}
        pipe.drop(reason, task=task, row=self._row(pipe, task, judged, id=sha256_hex(["judge", task.key, reason])[:32]))
        return []

    def stub(self, ctx: Context, task: Task) -> str:
        return json.dumps({"verdict": "pass", "reason": "The reply follows the principle."})


STAGE = JudgeStage()
