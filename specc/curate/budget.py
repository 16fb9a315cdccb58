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


# Closest-subset search is tried only when greedy filling misses and the pool is small enough
# (candidates × target tokens, in bits of the reachable-sums table): at small quotas records
# are coarse and greedy filling can miss by half a record; at large ones it does not miss.
_EXACT_BITS = 200_000_000
RICH = 3  # records beyond what a quota holds after which more would not find a better combination
GRAIN = 0.1  # a quota is met at nine tenths: a smaller miss is the grain of record lengths
OVER = 0.25  # ... and overshooting it by up to a quarter is better than missing it by more than GRAIN


def _closest(reach: int, target: int, limit: int, under: int, over: int) -> int | None:
    """The reachable sum closest to ``target`` at most ``under`` below or ``over`` above it (ties: below)."""
    for gap in range(0, max(under, over) + 1):
        for s, room in ((target - gap, under), (target + gap, over)):
            if gap <= room and 0 <= s <= limit and reach >> s & 1:
                return s
    return None


def closest_subset(candidates: list[Record], target: int) -> list[Record] | None:
    """The subset whose tokens best meet ``target``, or None when the pool is too large to search.

    Best: the closest sum that misses by at most ``GRAIN`` of the target or overshoots by at most
    ``OVER`` of it (a quota is met when nine tenths of it are), else the closest sum at all. A
    table of reachable sums per prefix (one big integer each) and a walk back through it: exact,
    and deterministic for a given candidate order.
    """
    limit = 2 * target
    if not candidates or len(candidates) * limit > _EXACT_BITS:
        return None
    mask = (1 << (limit + 1)) - 1
    tables = [1]
    for r in candidates:
        tables.append((tables[-1] | (tables[-1] << r.tokens)) & mask)
    reach = tables[-1]
    best = _closest(reach, target, limit, int(GRAIN * target), int(OVER * target))
    if best is None:
        best = _closest(reach, target, limit, target, target)
    if not best:
        return None
    chosen, s = [], best
    for i in range(len(candidates), 0, -1):
        if not tables[i - 1] >> s & 1:
            chosen.append(candidates[i - 1])
            s -= candidates[i - 1].tokens
    return list(reversed(chosen))


def _better(a: int, b: int, target: int) -> bool:
    """Whether sum ``a`` meets ``target`` better than sum ``b``: within the band first, then closer."""
    def key(s: int) -> tuple[bool, int]:
        inside = (1 - GRAIN) * target <= s <= (1 + OVER) * target
        return (not inside, abs(target - s))

    return key(a) < key(b)


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
        self.shortfall: dict[tuple[str, str], int] = {}  # short beyond the tolerance
        self.wanting: dict[tuple[str, str], int] = {}  # ... and worth generating more for

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
        self.report, self.shortfall, self.wanting = [], {}, {}
        for key, target in self.quotas.items():
            pool = buckets.get(key, [])
            group = (lambda r: r.genre) if key[1] == "document" else (lambda r: r.demo_kind)
            ordered = round_robin(pool, group, self.seed)
            chosen = fill(ordered, target, self.count) if target > 0 else []
            achieved = sum(r.tokens for r in chosen)
            if target > 0 and abs(target - achieved) > self.tolerance * target:
                if self.count is not None:
                    self.count([r for r in ordered if not r.tokens])
                exact = closest_subset(ordered, target)
                if exact is not None and _better(sum(r.tokens for r in exact), achieved, target):
                    chosen, achieved = exact, sum(r.tokens for r in exact)
            self.report.append(
                {"principle_id": key[0], "kind": key[1], "target": target, "achieved": achieved, "records": len(chosen)}
            )
            if target - achieved > self.tolerance * target:
                self.shortfall[key] = target - achieved
                # More records help when the pool lacks material, or when even its best combination
                # misses by a tenth and the pool is still small: a smaller miss, or one that many
                # records could not close, is the grain of record lengths, not a lack of records.
                total = sum(r.tokens for r in pool)
                rich = len(pool) >= target / (total / len(pool)) + RICH if total else False
                if total < target or (achieved < (1 - GRAIN) * target and not rich):
                    self.wanting[key] = target - achieved
            picked = {id(r) for r in chosen}
            for r in pool:
                if id(r) not in picked:
                    self.drop(r, "over_quota")
            yield from chosen
