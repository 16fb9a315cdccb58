"""Settings that depend on the model: the prompt set and the judge, and warnings for pairings that fail.

The embedded model (SmolLM2-135M) cannot follow the default prompts or grade a reply. A spec
that leaves ``templates.preset`` and ``demonstrations.judge`` unset gets what its generator
can do; one that sets them to something it cannot do is warned about by ``validate`` and ``plan``.
"""

from __future__ import annotations

from specc.spec.schema import STAGES, Spec

# Tokens of kept corpus the embedded model yields per minute on two CPU cores, measured on the
# starter spec with every filter on: for a warning, not a promise.
EMBEDDED_TOKENS_PER_MINUTE = 600
SLOW_MINUTES = 15


def embedded(model: str) -> bool:
    """Whether an LLM id names the embedded local model."""
    return model.startswith("local:")


def preset_for(spec: Spec, model: str) -> str:
    """The built-in prompt set: ``templates.preset`` if set, else ``small`` for the embedded model."""
    if spec.templates.preset:
        return spec.templates.preset
    return "small" if embedded(model) else "default"


def judge_for(spec: Spec, model: str) -> bool:
    """Whether demonstrations are judged: ``demonstrations.judge`` if set, else not on the embedded model."""
    judge = spec.corpus.demonstrations.judge
    return (not embedded(model)) if judge is None else judge


def warnings(spec: Spec, model: str | None = None, *, minutes: float | None = None) -> list[str]:
    """Pairings of model and settings that build badly or not at all, each with its fix.

    ``minutes``: the plan's estimate of the embedded model's wall time (``specc.plan.throughput``);
    without one, the budget at ``EMBEDDED_TOKENS_PER_MINUTE``.
    """
    if model is None:
        from specc.stages import llm_id

        model = llm_id(spec)
    out = []
    overridden = [s for s in STAGES if getattr(spec.templates, s)]
    if embedded(model):
        if preset_for(spec, model) == "default" and len(overridden) < len(STAGES):
            out.append(
                "templates.preset is `default`, but the embedded model cannot follow those prompts: almost "
                "nothing it writes will parse; remove templates.preset (or set `templates: small`), or use a "
                "capable model with --provider openai"
            )
        if spec.corpus.demonstrations.judge:
            out.append(
                "demonstrations.judge is on, but the embedded model cannot grade: nearly every reply will be "
                "dropped as judge:unparseable; set demonstrations.judge: false, or use a capable model"
            )
        if preset_for(spec, model) == "small" and "multi_turn" in spec.corpus.demonstrations.kinds:
            out.append(
                "demonstrations.kinds has multi_turn, but the small prompt set writes single questions: every "
                "multi_turn scenario will be dropped; remove it, or use a capable model"
            )
        where = "by the plan's estimate" if minutes is not None else "on two CPU cores"
        if minutes is None:
            minutes = spec.corpus.budget.tokens / EMBEDDED_TOKENS_PER_MINUTE
        if minutes > SLOW_MINUTES:
            out.append(
                f"corpus.budget.tokens is {spec.corpus.budget.tokens:,}: on the embedded model that takes "
                f"about {minutes:.0f} minutes {where}; lower it (or --budget) for a first try"
            )
    elif spec.templates.preset == "small":
        out.append(
            "templates.preset is `small`, the prompt set for the embedded 135M model; a capable model "
            "writes far better documents with the default prompts: remove templates.preset"
        )
    return out
