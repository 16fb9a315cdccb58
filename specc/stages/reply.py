"""Replies: the teacher answers a kept scenario as the assistant, with the principle in its system prompt."""

from __future__ import annotations


from specc.generate.base import Generation, Message
from specc.records import Record, Task, sha256_hex
from specc.spec.schema import Principle
from specc.stages.base import Input, Stage, TextResult, prompt_of, retry_longer, retry_with_error, stub_words
from specc.stages.context import Context, max_tokens_for
from specc.stages.items import Facet
from specc.stages.parsing import Scenario, parse_reply
from specc.stages.scenarios import pair


class ReplyInput(Input):
    round: int = 0
    facet: Facet
    kind: str
    scenario: Scenario
    parent_key: str = ""  # the scenarios task it came from


ReplyResult = TextResult


def demo_meta(ctx: Context, pid: str, inp, *, task_key: str, template_hash: str, finish_reason: str | None) -> dict:
    """A demonstration's provenance: its reply task, scenario, kind, facet and conflict partner."""
    partner, _ = pair(ctx, ctx.principle(pid), inp.kind)
    return {
        "principle_id": pid, "model": ctx.model, "template_hash": template_hash, "task_key": task_key,
        "spec_version": ctx.spec.version, "finish_reason": finish_reason, "round": inp.round,
        "demo_kind": inp.kind, "scenario": inp.scenario.model_dump(),
        "partner": partner.id if partner else None, "parent_key": inp.parent_key,
    }


def demo_record(ctx: Context, pid: str, inp, messages: list[Message], meta: dict, **kw) -> Record:
    # Tokens are counted in curation, in batches; the plan's walk never needs them.
    return Record(kind="demonstration", principle_id=pid, messages=messages, demo_kind=inp.kind, facet=inp.facet.id,
                  meta=meta, **kw)


class ReplyStage(Stage[ReplyInput, ReplyResult]):
    name = "reply"
    drop_prefix = "parse"

    def render(self, ctx: Context, p: Principle, inp: ReplyInput) -> Task:
        """The teacher call: principle(s) and operator prompt in the system message, then the user's turns."""
        _, pair_vars = pair(ctx, p, inp.kind)
        rendered = ctx.templates["reply"].render(**ctx.base(p), **pair_vars, operator=inp.scenario.system or "")
        teacher = "\n\n".join(m["content"] for m in rendered)
        messages: list[Message] = [{"role": "system", "content": teacher}] + [t.model_dump() for t in inp.scenario.turns]
        params = ctx.params("reply", max_tokens_for(ctx.spec, "reply"), (p.id, inp.kind, inp.scenario.identity()))
        return ctx.task("reply", p, messages, params, inp)

    def parse(self, ctx: Context, task: Task, gen: Generation) -> ReplyResult:
        return ReplyResult(text=parse_reply(gen.text, gen.finish_reason, ctx.spec.assistant.name),
                           finish_reason=gen.finish_reason)

    def retry(self, ctx: Context, task: Task, gen: Generation, failure) -> Task | None:
        if failure.reason == "truncated":
            return retry_longer(task)
        return retry_with_error(task, gen.text, failure, f"Reply to the user's last message as {ctx.spec.assistant.name}.")

    def children(self, pipe, task: Task, result: ReplyResult) -> list[Task]:
        ctx, inp = pipe.ctx, task.input
        p = ctx.principle(task.principle_id)
        # The teacher's system prompt is the reply's brief (the user's turns are the record itself); the
        # reply may quote the principles it follows, its facet and the operator's prompt.
        partner, _ = pair(ctx, p, inp.kind)
        brief = pipe.brief(prompt_of(task)[:1], (p, partner), [inp.facet.text, inp.scenario.system or ""])
        if ctx.judge:
            from specc.stages.judge import JudgeInput

            judge = JudgeInput(round=inp.round, facet=inp.facet, kind=inp.kind, scenario=inp.scenario,
                               reply=result.text, reply_key=task.key, reply_template_hash=task.template_hash,
                               finish_reason=result.finish_reason, parent_key=inp.parent_key, brief=brief)
            return [pipe.stages["judge"].render(ctx, p, judge)]
        messages = inp.scenario.messages() + [{"role": "assistant", "content": result.text}]
        meta = demo_meta(ctx, task.principle_id, inp, task_key=task.key, template_hash=task.template_hash,
                         finish_reason=result.finish_reason)
        pipe.add(demo_record(ctx, task.principle_id, inp, messages, meta, brief=brief))
        return []

    def give_up(self, pipe, task: Task, reason: str, text: str = "") -> list[Task]:
        inp = task.input
        messages = inp.scenario.messages() + ([{"role": "assistant", "content": text}] if text.strip() else [])
        meta = demo_meta(pipe.ctx, task.principle_id, inp, task_key=task.key, template_hash=task.template_hash,
                         finish_reason=None)
        row = demo_record(pipe.ctx, task.principle_id, inp, messages, meta,
                          id=sha256_hex(["reply", task.key, reason])[:32])
        pipe.drop(reason, task=task, row=row)
        return []

    def stub(self, ctx: Context, task: Task) -> str:
        return stub_words(task.key, 60) + "."


STAGE = ReplyStage()
