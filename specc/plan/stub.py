"""The plan's stub model: answers every stage in the shape its prompt asks for, in-process, instantly.

Each stage knows its own shape (``Stage.stub``); this only wraps the text as a Generation.
Running the real stage code on these answers (parse, gates, dedup, children) is what lets
``plan`` and ``diff`` count a build's calls with the code the build runs.
"""

from __future__ import annotations

from specc.generate.base import Generation
from specc.records import Task

STUB_MODEL = "specc-stub"


class StubModel:
    """Well-formed answers for every stage, derived from each task's key (so distinct tasks answer distinctly)."""

    def __init__(self, ctx, stages: dict):
        self.ctx = ctx
        self.stages = stages

    def answer(self, task: Task) -> Generation:
        text = self.stages[task.stage].stub(self.ctx, task)
        return Generation(text=text, finish_reason="stop", input_tokens=0, output_tokens=0, model=STUB_MODEL)
