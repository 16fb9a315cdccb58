"""Walk a build's task graph without an endpoint: cached answers where the cache has them, the stub model elsewhere.

The walk drives the same ``Pipeline`` a build does (parsing, the per-principle gates, dedup,
children), one task at a time, and counts every distinct task key: the ones the cache
already holds, and the ones a build would call. Identical keys are answered once, as the
engine does.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from specc.plan.stub import StubModel
from specc.records import Task
from specc.stages import Context, Pipeline
from specc.tokens import count_messages

LEAVES = ("document", "judge")  # their answers are not kept: at 25M tokens they are most of the text
CALIBRATE = 24  # tasks per stage whose prompts are tokenised; the rest are estimated from their length


@dataclass
class Walk:
    """What a build of the spec would run, and what the cache already holds."""

    pipe: Pipeline
    keys: set[str] = field(default_factory=set)  # every distinct task key visited
    new_keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (stage, principle) not in the cache
    tasks: Counter = field(default_factory=Counter)  # distinct keys per stage
    cached: Counter = field(default_factory=Counter)  # ... of which the cache holds
    to_run: Counter = field(default_factory=Counter)  # ... of which a build would call
    chars: Counter = field(default_factory=Counter)  # prompt characters per stage
    max_tokens: Counter = field(default_factory=Counter)  # output limits per stage
    sample: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # stage -> [(chars, tokens)]

    def input_tokens(self, stage: str) -> int:
        """Prompt tokens of a stage: tokenised for a sample, scaled by length for the rest."""
        got = self.sample.get(stage) or []
        chars = sum(c for c, _ in got)
        ratio = sum(t for _, t in got) / chars if chars else 0.25
        return round(self.chars[stage] * ratio)


def walk(ctx: Context, cache=None, *, pipe: Pipeline | None = None, tasks: list[Task] | None = None) -> Walk:
    """Run the pipeline over ``cache`` (or none) and the stub model until no task is left."""
    pipe = pipe or Pipeline(ctx, briefs=False)
    stub = StubModel(ctx, pipe.stages)
    cached_keys = cache.keys() if cache is not None else set()
    w = Walk(pipe)
    answers: dict[str, object] = {}  # answers of stages with children, for a repeated key
    queue = deque(pipe.first_tasks(0) if tasks is None else tasks)
    while queue:
        t = queue.popleft()
        key = t.key
        gen = answers.get(key)
        if gen is None and key in w.keys:  # a repeated leaf: answer it again, count it once
            gen = (cache.get(key) if key in cached_keys else None) or stub.answer(t)
        if gen is None:
            stage = t.stage
            w.keys.add(key)
            w.tasks[stage] += 1
            if key in cached_keys and (gen := cache.get(key)) is not None:
                w.cached[stage] += 1
            else:
                gen = stub.answer(t)
                w.to_run[stage] += 1
                w.new_keys[key] = (stage, t.principle_id)
            n = sum(len(m["content"]) for m in t.messages)
            w.chars[stage] += n
            w.max_tokens[stage] += t.params.max_tokens
            sample = w.sample.setdefault(stage, [])
            if len(sample) < CALIBRATE:
                sample.append((n, count_messages(ctx.tokenizer, list(t.messages))))
            if stage not in LEAVES:
                answers[key] = gen
        queue.extend(pipe.on_result(t, gen) or [])
    return w
