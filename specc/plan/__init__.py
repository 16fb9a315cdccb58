"""The plan pass: quotas, sizing from the budget, the estimate and the diff, all without an LLM.

- ``quotas``: token quotas per principle × kind from the budget, the mix and the weights.
- ``sizing``: how many records, facets and calls each principle gets, and the slot layout
  the stages follow.
- ``stub`` and ``walk``: the stage code run against a stub model (and a cache, if there is
  one), so ``plan`` and ``diff`` count what a build would do with the code a build runs.
- ``estimate``: ``make_plan`` and the ``Plan`` it returns; ``diff``: ``diff_specs``.

Names are imported lazily: the stages import ``sizing``, and the estimate imports the stages.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "compute_quotas": "specc.plan.quotas",
    "Sizing": "specc.plan.sizing",
    "size_principles": "specc.plan.sizing",
    "Plan": "specc.plan.estimate",
    "StageEstimate": "specc.plan.estimate",
    "make_plan": "specc.plan.estimate",
    "SpecDiff": "specc.plan.diff",
    "diff_specs": "specc.plan.diff",
    "StubLLM": "specc.plan.stub",
    "walk": "specc.plan.walk",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'specc.plan' has no attribute {name!r}")
