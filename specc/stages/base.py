"""The stage descriptor: render a Task from a typed input, parse an answer into a typed result, yield children.

Every stage implements the same few methods, so the engine's callbacks (``Pipeline``),
the plan's stub model and the build all run one piece of code per stage:

- ``render(ctx, p, input) -> Task``: the prompt, sampling parameters and typed input;
- ``parse(ctx, task, gen) -> result``: a pydantic result, or ``ParseFailure``;
- ``children(pipe, task, result) -> tasks``: what follows (through the principle's gates);
- ``give_up(pipe, task, reason, text)``: the task yields nothing: count it, keep the row
  for review, release whatever waited on it;
- ``stub(ctx, task) -> str``: an answer in the shape the stage asks for, for ``plan``/``diff``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from specc.generate.base import Generation
from specc.records import Task
from specc.stages.parsing import ParseFailure

if TYPE_CHECKING:
    from specc.spec.schema import Principle
    from specc.stages.context import Context
    from specc.stages.pipeline import Pipeline

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out")

JSON_AGAIN = "Answer again with only the JSON object described above."
LIST_AGAIN = "Write only the numbered list asked for above, one item per line."


class Input(BaseModel):
    """Base of the typed task inputs: frozen, and never part of a task's key."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class TextResult(BaseModel):
    """A stage's answer that is one piece of text (a document, a reply), and why the model stopped."""

    text: str
    finish_reason: str = "stop"


def retry_with_error(task: Task, answer: str, failure: ParseFailure, instruction: str) -> Task | None:
    """Once: the same task with the model's answer and the parse error appended, so it can fix it."""
    if "parse" in task.retries:
        return None
    shown = answer.strip()[:4000] or "(an empty answer)"
    messages = task.messages + (
        {"role": "assistant", "content": shown},
        {"role": "user", "content": f"That answer could not be used: {failure.detail}. {instruction}"},
    )
    return replace(task, messages=messages, retries=task.retries + ("parse",))


def retry_longer(task: Task) -> Task | None:
    """Once: the same task with twice the token limit (a new key, so not the cached truncated answer)."""
    if "length" in task.retries:
        return None
    params = replace(task.params, max_tokens=task.params.max_tokens * 2)
    return replace(task, params=params, retries=task.retries + ("length",))


def prompt_of(task: Task) -> list[str]:
    """The texts of the task's own prompt: its messages before any answer a retry shows the model."""
    out = []
    for m in task.messages:
        if m["role"] == "assistant":
            break
        out.append(m["content"])
    return out


def stub_words(seed: str, n: int) -> str:
    """``n`` pseudo-words derived from ``seed``: distinct per seed, so stub answers never look like repeats."""
    out: list[str] = []
    h = hashlib.blake2b(seed.encode("utf-8"), digest_size=30).hexdigest()
    while len(out) < n:
        out += [h[i:i + 6] for i in range(0, 60, 6)]
        h = hashlib.blake2b(h.encode("ascii"), digest_size=30).hexdigest()
    return " ".join("w" + w for w in out[:n])


class Stage(ABC, Generic[In, Out]):
    """One stage of the expansion; subclasses set ``name`` and implement render, parse, children and stub."""

    name: ClassVar[str]
    drop_prefix: ClassVar[str] = ""  # drop reasons are "<prefix>:<reason>"; default: the stage name
    json_mode: ClassVar[bool] = False
    retry_instruction: ClassVar[str] = JSON_AGAIN
    lists: ClassVar[bool] = False  # the answer is a list (facets, document types, ideas, scenarios)

    @abstractmethod
    def render(self, ctx: Context, p: Principle, inp: In) -> Task: ...

    @abstractmethod
    def parse(self, ctx: Context, task: Task, gen: Generation) -> Out: ...

    @abstractmethod
    def children(self, pipe: Pipeline, task: Task, result: Out) -> list[Task]: ...

    @abstractmethod
    def stub(self, ctx: Context, task: Task) -> str: ...

    def retry(self, ctx: Context, task: Task, gen: Generation, failure: ParseFailure) -> Task | None:
        """After an unusable answer: once with more room if it was cut off, once with the error shown."""
        longer = retry_longer(task) if gen.finish_reason == "length" or failure.reason == "truncated" else None
        if longer is not None:
            return longer
        if self.lists and ctx.preset == "small":
            # The small prompts ask for a numbered list: a JSON schema in the retry only confuses a tiny model.
            return retry_with_error(task, gen.text, ParseFailure(failure.reason, "it was not a numbered list"),
                                    LIST_AGAIN)
        return retry_with_error(task, gen.text, failure, self.retry_instruction)

    def give_up(self, pipe: Pipeline, task: Task, reason: str, text: str = "") -> list[Task]:
        """The task yields nothing: count why; stages with a gate or a reviewable row override this."""
        pipe.drop(reason, task=task)
        return []

    def reason(self, why: str) -> str:
        return f"{self.drop_prefix or self.name}:{why}"
