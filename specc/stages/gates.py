"""Per-principle gates: a stage's children wait until every call of a scope has resolved, then go in slot order.

A scope is small and completes as a unit: one principle's facet calls, one facet's
document-type calls, one principle's ideas calls of a round, its scenario calls of a
round. Dedup within a scope runs in slot order, never in arrival order, so what is kept
(and so every downstream key) is the same however the calls finished, and a rebuild over
the cache makes no call. Other principles run on meanwhile: this is not a stage barrier.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from specc.stages.items import Facet, NearSet

IDEA_SIMILARITY = 0.75  # word-set Jaccard at which two idea titles are the same idea
SCENARIO_SIMILARITY = 0.7
FACET_SIMILARITY = 0.6


class Gate:
    """Results by slot; ``resolve`` says when the last expected slot has come in."""

    def __init__(self, slots: Iterable[int], wanted: int = 0):
        self.waiting = set(slots)
        self.results: dict[int, Any] = {}
        self.wanted = wanted
        self.released = False

    def resolve(self, slot: int, value: Any) -> bool:
        """Record ``value`` (None: the slot yielded nothing); True exactly once, when the gate opens."""
        if slot not in self.waiting:
            return False
        self.waiting.discard(slot)
        self.results[slot] = value
        if self.waiting or self.released:
            return False
        self.released = True
        return True

    def open_if_empty(self) -> bool:
        if self.waiting or self.released:
            return False
        self.released = True
        return True

    def in_order(self) -> list[tuple[int, Any]]:
        return [(s, self.results[s]) for s in sorted(self.results)]


@dataclass
class PrincipleState:
    """Where one principle's expansion stands."""

    facets: list[Facet] | None = None  # known once the facet gate has opened (at once without generated facets)
    facet_gate: Gate | None = None
    types: dict[int, list[str]] = field(default_factory=dict)  # facet index -> its ordered document types
    type_gates: dict[int, Gate] = field(default_factory=dict)
    type_want: dict[int, int] = field(default_factory=dict)  # facet index -> document types it needs beyond the genres
    held: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)  # facet -> (round, slot, rank) awaiting types
    ideas_gates: dict[int, Gate] = field(default_factory=dict)  # round -> gate
    scenario_gates: dict[int, Gate] = field(default_factory=dict)
    pending_round: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)  # round -> sizes, until facets
    next_ideas: int = 0  # slot counters run on across rounds: a top-up's calls are new slots
    next_scenarios: int = 0
    seen_ideas: NearSet = field(default_factory=lambda: NearSet(IDEA_SIMILARITY))
    seen_scenarios: NearSet = field(default_factory=lambda: NearSet(SCENARIO_SIMILARITY))
    types_used: set[str] = field(default_factory=set)
    ideas_calls: int = 0
    scenario_calls: int = 0
