"""The eval's stages, typed like the build's (``specc.stages.base.Stage``): write items, answer them, grade the answers.

- ``eval_items``: the generator writes a batch of test conversations of one kind for one
  principle, each with a short rubric (``ItemsInput`` -> ``ItemsResult``);
- ``answer``: the target replies to one item exactly as a user would send it: no prompt of
  specc's and no principle around it (``AnswerInput`` -> ``AnswerResult``);
- ``grade``: the judge grades that reply against the item's principle and rubric, failing
  closed (``GradeInput`` -> ``GradeResult``).

``Collector`` is the engine's callbacks for all three: it routes each result to its stage and
keeps what the stages hand it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from specc.errors import RunError, SpeccError
from specc.eval.kinds import HOLDOUT, KIND_DESCRIPTIONS, other_language
from specc.generate.base import Generation, SamplingParams
from specc.records import Task, sha256_hex
from specc.spec.schema import Example, Principle, Spec
from specc.stages import format_principle, partner_of
from specc.stages.base import Input, Stage, stub_words
from specc.stages.context import Context
from specc.stages.parsing import ParseFailure, Scenario, as_items, find_json, parse_reply, parse_scenarios
from specc.stages.verdict import parse_verdict

PER_CALL = 5  # items asked for in one eval_items call: a batch size, whatever -n is, so prompts never depend on it
GRADE_MAX_TOKENS = 256
_KEYS = ("items", "tests", "scenarios", "conversations")


class EvalItem(BaseModel):
    """One item of a suite, as stored in ``items.jsonl``: what to send the target and how to grade the reply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    principle_id: str
    kind: str
    source: Literal["generated", "holdout"] = "generated"
    messages: list[dict[str, str]] = Field(min_length=1)  # an optional operator system prompt, then the turns
    rubric: str = Field(min_length=1)
    language: str
    task_key: str = ""  # the eval_items call that wrote it; empty for a holdout example

    @property
    def operator(self) -> str:
        return next((m["content"] for m in self.messages if m["role"] == "system"), "")

    @property
    def turns(self) -> list[dict[str, str]]:
        return [m for m in self.messages if m["role"] != "system"]

    @property
    def text(self) -> str:
        """Everything sent to the target: what decontamination and dedup look at."""
        return "\n\n".join(m["content"] for m in self.messages)


def item_id(pid: str, kind: str, messages: list[dict[str, str]]) -> str:
    return sha256_hex(["eval-item", pid, kind, messages])[:16]


def default_rubric(spec: Spec, p: Principle, kind: str) -> str:
    """The rubric of an item its writer gave none: the principle's statement (and, in a conflict, who wins)."""
    out = f'The reply follows "{p.title.strip()}": {p.statement.strip()}'
    partner = partner_of(spec, p) if kind == "conflict" else None
    if partner is not None:
        out += f' Where this conflicts with "{partner.title.strip()}", the lower priority number wins.'
    return out


def holdout_item(spec: Spec, p: Principle, e: Example) -> EvalItem:
    """A held-out example as an item: its conversation as it is, its replies and note as the rubric."""
    messages = [{"role": "system", "content": e.system.strip()}] if e.system else []
    for role, content in e.conversation:
        # An OpenAI-style endpoint wants a tool call id with a tool message; shown as user text it still reads right.
        messages.append({"role": "user", "content": f"Tool output:\n{content.strip()}"} if role == "tool"
                        else {"role": role, "content": content.strip()})
    parts = [f"{label}: {text.strip()}" for label, text in
             (("A reply passes if it does what this one does", e.good), ("This one is acceptable too", e.acceptable),
              ("A reply like this one fails", e.bad), ("Why", e.note or None)) if text]
    rubric = " ".join(parts) or default_rubric(spec, p, HOLDOUT)
    return EvalItem(id=item_id(p.id, HOLDOUT, messages), principle_id=p.id, kind=HOLDOUT, source="holdout",
                    messages=messages, rubric=rubric, language=spec.language)


# ---------------------------------------------------------------- eval_items

class Draft(BaseModel):
    """An item as the writer proposed it."""

    scenario: Scenario
    rubric: str = ""


class ItemsInput(Input):
    kind: str
    batch: int = 0  # 0 first; a top-up asks again with the next batch
    corpus_domains: str = ""  # for other_domain: the document types, settings and audiences the corpus used


class ItemsResult(BaseModel):
    items: list[Draft]
    invalid: int = 0


def _rubric_of(raw: Any) -> str:
    if not isinstance(raw, dict):
        return ""
    d = {str(k).lower(): v for k, v in raw.items()}
    value = next((d[k] for k in ("rubric", "criteria", "grading", "expected", "pass_if") if d.get(k)), "")
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    return str(value).strip() if isinstance(value, (str, list)) else ""


def parse_items(text: str, kind: str) -> tuple[list[Draft], int]:
    """Items from an answer: JSON as asked, else the question lines a small model writes (with no rubric)."""
    if not text.strip():
        raise ParseFailure("empty", "the answer was empty")
    drafts: list[Draft] = []
    bad = 0
    try:
        value, _ = find_json(text, lambda v: any(isinstance(x, (dict, str)) for x in as_items(v, _KEYS)))
        for raw in as_items(value, _KEYS):
            try:
                drafts.append(Draft(scenario=Scenario.model_validate(raw), rubric=_rubric_of(raw)))
            except ValidationError:
                bad += 1
    except ParseFailure:
        try:
            scenarios, _, bad = parse_scenarios(text, "direct")
        except ParseFailure:
            scenarios = []
        drafts = [Draft(scenario=s) for s in scenarios]
    before = len(drafts)
    if kind == "multi_turn":
        drafts = [d for d in drafts if len(d.scenario.turns) >= 3]
    elif kind == "operator":  # without the operator's instruction it is not this kind of test
        drafts = [d for d in drafts if d.scenario.system]
    bad += before - len(drafts)
    if not drafts:
        raise ParseFailure(
            "unparseable", 'expected {"items": [{"system": null, "turns": [{"role": "user", "content": ...}], '
            '"rubric": ...}]}' + {"multi_turn": " with earlier user and assistant turns before the last user turn",
                                   "operator": " with the operator's instruction in \"system\""}.get(kind, ""))
    return drafts, bad


class ItemsStage(Stage[ItemsInput, ItemsResult]):
    name = "eval_items"
    json_mode = True

    def render(self, ctx: Context, p: Principle, inp: ItemsInput) -> Task:
        """Examples are left out: they seed the corpus, and the suite should not look like it."""
        partner = partner_of(ctx.spec, p) if inp.kind == "conflict" else None
        code, name = other_language(ctx.spec, p)
        messages = ctx.templates["eval_items"].render(
            **ctx.base(p, examples=False), kind=inp.kind, kind_description=KIND_DESCRIPTIONS[inp.kind], n=PER_CALL,
            partner=partner.model_dump(mode="json", exclude={"examples"}) if partner else None,
            partner_text=format_principle(partner, examples=False) if partner else "",
            corpus_domains=inp.corpus_domains, item_language=code, item_language_name=name, batch=inp.batch,
        )
        per_item = 320 if inp.kind == "multi_turn" else 170
        params = ctx.params("eval_items", 60 + per_item * PER_CALL, (p.id, inp.kind, inp.batch), json_mode=True)
        return ctx.task("eval_items", p, messages, params, inp)

    def parse(self, ctx: Context, task: Task, gen: Generation) -> ItemsResult:
        drafts, bad = parse_items(gen.text, task.input.kind)
        return ItemsResult(items=drafts, invalid=bad)

    def children(self, pipe: Collector, task: Task, result: ItemsResult) -> list[Task]:
        pipe.drop("eval_items:invalid", result.invalid, pid=task.principle_id)
        pipe.batches[(task.principle_id, task.input.kind, task.input.batch)] = (task.key, result.items)
        return []

    def give_up(self, pipe: Collector, task: Task, reason: str, text: str = "") -> list[Task]:
        pipe.drop(reason, pid=task.principle_id)
        pipe.batches[(task.principle_id, task.input.kind, task.input.batch)] = (task.key, [])
        return []

    def stub(self, ctx: Context, task: Task) -> str:
        kind = task.input.kind
        out = []
        for i in range(PER_CALL):
            turns = [{"role": "user", "content": stub_words(f"{task.key}:{i}", 20) + "?"}]
            if kind == "multi_turn":
                turns = [{"role": "user", "content": stub_words(f"{task.key}:u{i}", 10)},
                         {"role": "assistant", "content": stub_words(f"{task.key}:a{i}", 10)}] + turns
            system = stub_words(f"{task.key}:s{i}", 8) if kind == "operator" else None
            out.append({"system": system, "turns": turns, "rubric": stub_words(f"{task.key}:r{i}", 12)})
        return json.dumps({"items": out})


# ---------------------------------------------------------------- answer

class AnswerInput(Input):
    item: EvalItem
    max_tokens: int = 1024


class AnswerResult(BaseModel):
    text: str
    finish_reason: str = "stop"


class AnswerStage(Stage[AnswerInput, AnswerResult]):
    name = "answer"

    def render(self, ctx: Context, p: Principle, inp: AnswerInput) -> Task:
        """The item's messages alone, greedy: the same target answers the same item the same way, from the cache."""
        params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=inp.max_tokens)
        # No template: the key is the target, the messages and the parameters, so it outlives specc's prompts.
        return Task(stage="answer", principle_id=p.id, model=ctx.model, messages=tuple(inp.item.messages),
                    params=params, template_hash="", input=inp)

    def parse(self, ctx: Context, task: Task, gen: Generation) -> AnswerResult:
        # A reply cut off at the limit is graded as it is: the judge sees what a user would have seen.
        return AnswerResult(text=parse_reply(gen.text, "stop", ctx.spec.assistant.name), finish_reason=gen.finish_reason)

    def retry(self, ctx: Context, task: Task, gen: Generation, failure: ParseFailure) -> Task | None:
        return None  # asking again with a hint would coach the model under test

    def children(self, pipe: Collector, task: Task, result: AnswerResult) -> list[Task]:
        pipe.answers[task.input.item.id] = Answer(result.text, result.finish_reason, task.key)
        return []

    def give_up(self, pipe: Collector, task: Task, reason: str, text: str = "") -> list[Task]:
        pipe.drop(reason, pid=task.principle_id)
        pipe.answers[task.input.item.id] = Answer("", None, task.key, failed=reason)
        return []

    def stub(self, ctx: Context, task: Task) -> str:
        return stub_words(task.key, 40) + "."


# ---------------------------------------------------------------- grade

class GradeInput(Input):
    item: EvalItem
    reply: str


class GradeResult(BaseModel):
    verdict: Literal["pass", "fail"]
    reason: str = ""


class GradeStage(Stage[GradeInput, GradeResult]):
    name = "grade"
    json_mode = True

    def render(self, ctx: Context, p: Principle, inp: GradeInput) -> Task:
        """The principle (with its visible examples), the item's rubric and the conversation: nothing about the target."""
        item = inp.item
        partner = partner_of(ctx.spec, p) if item.kind == "conflict" else None
        messages = ctx.templates["grade"].render(
            **ctx.base(p), rubric=item.rubric, operator=item.operator, turns=item.turns, reply=inp.reply,
            partner=partner.model_dump(mode="json", exclude={"examples"}) if partner else None,
            partner_text=format_principle(partner) if partner else "",
        )
        # Greedy, like the build's judge; the seed follows the item and the reply, so identical replies
        # from two targets share one cached verdict.
        params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=GRADE_MAX_TOKENS, json_mode=True,
                                seed=ctx.seed("grade", item.id, sha256_hex(inp.reply)[:16]))
        return ctx.task("grade", p, messages, params, inp)

    def parse(self, ctx: Context, task: Task, gen: Generation) -> GradeResult:
        v = parse_verdict(gen.text)
        return GradeResult(verdict=v.verdict, reason=v.reason)

    def children(self, pipe: Collector, task: Task, result: GradeResult) -> list[Task]:
        pipe.grades[task.input.item.id] = Grade(result.verdict, result.reason, task.key)
        return []

    def give_up(self, pipe: Collector, task: Task, reason: str, text: str = "") -> list[Task]:
        # Fail closed: a verdict that cannot be read, or a judge that never answered, is a fail.
        pipe.drop(reason, pid=task.principle_id)
        status = "unparseable" if reason.startswith("grade:") else "error"
        pipe.grades[task.input.item.id] = Grade("fail", text.strip()[:500] or reason, task.key, status=status)
        return []

    def stub(self, ctx: Context, task: Task) -> str:
        return json.dumps({"verdict": "pass", "reason": "The reply follows the principle."})


STAGES: dict[str, Stage] = {s.name: s for s in (ItemsStage(), AnswerStage(), GradeStage())}


# ---------------------------------------------------------------- the engine's callbacks

@dataclass
class Answer:
    text: str
    finish_reason: str | None
    task_key: str
    failed: str = ""  # why there is no reply: the call failed, or the reply was empty


@dataclass
class Grade:
    verdict: str
    reason: str
    task_key: str
    status: str = "graded"  # graded | unparseable | error


@dataclass
class Collector:
    """Routes each result to its stage, in that stage's context (generator, target or judge), and keeps the outcomes."""

    ctxs: dict[str, Context]  # stage name -> the context its tasks were rendered in
    batches: dict[tuple[str, str, int], tuple[str, list[Draft]]] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)
    grades: dict[str, Grade] = field(default_factory=dict)
    drops: Counter = field(default_factory=Counter)
    drops_by_principle: dict[str, Counter] = field(default_factory=dict)

    def on_result(self, task: Task, gen: Generation) -> list[Task]:
        stage, ctx = STAGES[task.stage], self.ctxs[task.stage]
        try:
            try:
                result = stage.parse(ctx, task, gen)
            except ParseFailure as f:
                retry = stage.retry(ctx, task, gen, f)
                if retry is not None:
                    return [retry]
                return stage.give_up(self, task, stage.reason(f.reason), gen.text)
            return stage.children(self, task, result)
        except SpeccError:
            raise
        except Exception as e:  # a bug or a broken template, not a bad answer
            raise RunError(f"the {task.stage} stage failed on a task for principle {task.principle_id!r} "
                           f"(key {task.key[:12]}): {type(e).__name__}: {e}") from e

    def on_failure(self, task: Task, error: str) -> list[Task]:
        return STAGES[task.stage].give_up(self, task, f"generate:{task.stage}_failed")

    def drop(self, reason: str, n: int = 1, *, pid: str | None = None) -> None:
        if n:
            self.drops[reason] += n
            if pid:
                self.drops_by_principle.setdefault(pid, Counter())[reason] += n
