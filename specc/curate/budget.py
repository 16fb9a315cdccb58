"""Token-budget selection: fill each principle × kind quota, spread over genres and demo kinds."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator

from specc.curate.base import Step
from specc.records import Record

# Records tokenised per call of the counter: big enough for batch encoding, small enough to waste little.
_COUNT_AHEAD = 256


def _order_key(seed: int, record: Record) -> str:
    # Seeded so a different corpus.seed picks a different (still deterministic) subset.
    return hashlib.sha256(f"{seed}:{record.id}:{record.principle_id}".encode()).hexdigest()


def round_robin(records: list[Record], group, seed: int = 0) -> list[Record]:
    """Records interleaved one group at a time (groups by name), each group in seeded-hash order."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[group(r) or ""].append(r)
    queues = [sorted(groups[g], key=lambda r: _order_key(seed, r)) for g in sorted(groups)]
    out: list[Record] = []
    depth = 0
    while len(out) < len(records):
        out.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return out


def fill(candidates: list[Record], target: int, count: Callable[[list[Record]], None] | None = None) -> list[Record]:
    """Take candidates in order while adding one undershoots no worse than it overshoots.

    ``count`` sets ``tokens`` on records that have none, called lazily on runs of candidates,
    so records the quota never reaches are never tokenised.
    """
    chosen: list[Record] = []
    total = 0
    for i, r in enumerate(candidates):
        gap = target - total
        if gap <= 0:
            break
        if count is not None and not r.tokens:
            count([c for c in candidates[i : i + _COUNT_AHEAD] if not c.tokens])
        # Taking r overshoots by r.tokens - gap; leaving it undershoots by gap. A record that
        # does not fit is skipped, and a smaller one later in the order may still close the gap.
        if r.tokens - gap <= gap:
            chosen.append(r)
            total += r.tokens
    return chosen


class BudgetSelector(Step):
    """Selects records to each quota's token target; the rest are dropped as ``over_quota``."""

    name = "budget"

    def __init__(
        self,
        quotas: dict[tuple[str, str], int],
        *,
        tolerance: float = 0.03,
        seed: int = 0,
        count: Callable[[list[Record]], None] | None = None,
    ) -> None:
        super().__init__()
        self.count = count
        self.quotas = dict(quotas)
        self.tolerance = tolerance
        self.seed = seed
        self.report: list[dict] = []
        self.shortfall: dict[tuple[str, str], int] = {}

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        raise TypeError("budget selection needs every record: call the step on an iterable")

    def __call__(self, records: Iterable[Record]) -> Iterator[Record]:
        buckets: dict[tuple[str, str], list[Record]] = defaultdict(list)
        for r in records:
            key = (r.principle_id, r.kind)
            if key in self.quotas:
                buckets[key].append(r)
            else:
                self.drop(r, "unknown_principle")
        self.report, self.shortfall = [], {}
        for key, target in self.quotas.items():
            pool = buckets.get(key, [])
            group = (lambda r: r.genre) if key[1] == "document" else (lambda r: r.demo_kind)
            chosen = fill(round_robin(pool, group, self.seed), target, self.count) if target > 0 else []
            achieved = sum(r.tokens for r in chosen)
            self.report.append(
                {"principle_id": key[0], "kind": key[1], "target": target, "achieved": achieved, "records": len(chosen)}
            )
            if target - achieved > self.tolerance * target:
                self.shortfall[key] = target - achieved
            picked = {id(r) for r in chosen}
            for r in pool:
                if id(r) not in picked:
                    self.drop(r, "over_quota")
            yield from chosen
