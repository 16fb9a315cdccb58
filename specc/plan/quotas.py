"""Token quotas per principle × kind, from the budget, the mix and the weights."""

from __future__ import annotations

from specc.spec.schema import Spec

KINDS = ("document", "demonstration")


def compute_quotas(spec: Spec) -> dict[tuple[str, str], int]:
    """{(principle_id, kind): tokens}. Largest-remainder rounding so quotas sum exactly to the budget."""
    budget = spec.corpus.budget.tokens
    mix = {"document": spec.corpus.mix.documents, "demonstration": spec.corpus.mix.demonstrations}
    total_w = sum(p.weight for p in spec.principles)
    exact = {
        (p.id, kind): budget * mix[kind] * p.weight / total_w for p in spec.principles for kind in KINDS
    }
    floors = {k: int(v) for k, v in exact.items()}
    short = budget - sum(floors.values())
    # Deterministic tie-break: larger remainder first, then spec order.
    order = sorted(exact, key=lambda k: (-(exact[k] - floors[k]), list(exact).index(k)))
    for k in order[:short]:
        floors[k] += 1
    return floors
