"""The stages: how a spec expands into tasks, and how each result becomes records or further tasks.

Each stage is a typed descriptor (``specc.stages.base.Stage``) in a module of its own:
``facets``, ``doctypes``, ``ideas``, ``document``, ``scenarios``, ``reply``, ``judge``. It
renders a ``Task`` from a typed input, parses an answer into a typed result, and says which
tasks follow. ``Pipeline`` (the engine's callbacks) routes each result to its stage and
holds the per-principle gates that dedup ideas and scenarios before they are used.
Everything a prompt contains is chosen here, so an edit to one principle changes only the
keys of the tasks that carry it; how many tasks run follows the budget
(``specc.plan.sizing``), what a prompt says never does.
"""

from __future__ import annotations

from specc.spec.schema import Principle, Spec


def llm_id(spec: Spec, provider: str | None = None, model: str | None = None, base_url: str | None = None) -> str:
    """The id ``make_llm`` would give, without constructing the provider."""
    from specc.generate.factory import llm_id as _llm_id

    return _llm_id(spec.generator, provider=provider, model=model, base_url=base_url)


def format_principle(p: Principle, *, examples: bool = True) -> str:
    """A principle as prompt text. Holdout examples never appear: they exist to test the corpus."""
    lines = [f'Principle "{p.title}" (id: {p.id}, priority {p.priority})', f"What: {p.statement.strip()}"]
    if p.rationale.strip():
        lines.append(f"Why: {p.rationale.strip()}")
    if p.subrules:
        lines.append("In particular:")
        lines += [f"- {r.strip()}" for r in p.subrules]
    shown = [e for e in p.examples if not e.holdout] if examples else []
    if shown:
        lines.append("Examples:")
        lines += [format_example(e) for e in shown]
    return "\n".join(lines)


def format_example(e) -> str:
    parts = []
    if e.system:
        parts.append(f"  Operator instructions: {e.system.strip()}")
    parts += [f"  {role.capitalize()}: {content.strip()}" for role, content in e.conversation]
    if e.good:
        parts.append(f"  A good reply: {e.good.strip()}")
    if e.acceptable:
        parts.append(f"  An acceptable reply: {e.acceptable.strip()}")
    if e.bad:
        parts.append(f"  A bad reply: {e.bad.strip()}")
    if e.note:
        parts.append(f"  Why: {e.note.strip()}")
    return "-" + "\n".join(parts)[1:]


def spec_content(*principles: Principle | None) -> list[str]:
    """The spec's own words about ``principles``: what a record may quote without echoing its prompt."""
    out: list[str] = []
    for p in principles:
        if p is None:
            continue
        out += [p.title, p.statement, p.rationale, *p.subrules]
        for e in p.examples:
            if not e.holdout:
                out += [e.system or "", *(content for _, content in e.conversation), e.good or "",
                        e.acceptable or "", e.bad or "", e.note]
    return out


def format_spec(spec: Spec) -> str:
    """The whole spec as prompt text, for ``corpus.context: spec``."""
    head = f"Assistant: {spec.assistant.name}" + (f", developed by {spec.assistant.developer}" if spec.assistant.developer else "")
    desc = [spec.description.strip()] if spec.description.strip() else []
    return "\n\n".join([head, *desc, *(format_principle(p) for p in spec.principles)])


def partner_of(spec: Spec, p: Principle) -> Principle | None:
    """The principle a ``conflict`` demonstration pairs with ``p``: the nearest in priority, then in spec order."""
    order = {q.id: i for i, q in enumerate(spec.principles)}
    others = [q for q in spec.principles if q.id != p.id]
    if not others:
        return None
    return min(others, key=lambda q: (abs(q.priority - p.priority), abs(order[q.id] - order[p.id]), order[q.id]))


from specc.stages.context import Context, max_tokens_for  # noqa: E402
from specc.stages.pipeline import Pipeline  # noqa: E402

__all__ = ["Context", "Pipeline", "format_example", "format_principle", "format_spec", "llm_id", "max_tokens_for",
           "partner_of", "spec_content"]
