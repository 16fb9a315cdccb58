"""Budget selection: quotas filled within tolerance, spread across genres and kinds, shortfall reported."""

from __future__ import annotations

import random
from collections import Counter

from specc.curate.budget import BudgetSelector, fill, round_robin
from specc.records import Record


def rec(pid: str, kind: str, tokens: int, group: str, i: int) -> Record:
    if kind == "document":
        return Record(kind="document", principle_id=pid, text=f"doc {pid} {i}", genre=group, tokens=tokens)
    msgs = [{"role": "user", "content": f"q {pid} {i}"}, {"role": "assistant", "content": "a"}]
    return Record(kind="demonstration", principle_id=pid, messages=msgs, demo_kind=group, tokens=tokens)


def test_round_robin_interleaves_groups_deterministically():
    records = [rec("p", "document", 10, g, i) for g, n in (("a", 5), ("b", 2), ("c", 3)) for i in range(n)]
    order = round_robin(records, lambda r: r.genre, seed=0)
    assert [r.genre for r in order] == ["a", "b", "c", "a", "b", "c", "a", "c", "a", "a"]
    assert order == round_robin(list(reversed(records)), lambda r: r.genre, seed=0)
    assert order != round_robin(records, lambda r: r.genre, seed=1)


def test_fill_stops_when_overshoot_exceeds_undershoot():
    rs = [rec("p", "document", t, "g", i) for i, t in enumerate([400, 400, 300, 250, 50])]
    # 400+400 = 800; 300 would overshoot by 100 against an undershoot of 200: taken (1100).
    assert [r.tokens for r in fill(rs, 1000)] == [400, 400, 300]
    # Target 950: after 800, 300 overshoots by 150, exactly the undershoot: taken.
    # Target 940: 300 would overshoot by 160 > 140: skipped; 250 overshoots by 110: taken.
    assert [r.tokens for r in fill(rs, 950)] == [400, 400, 300]
    assert [r.tokens for r in fill(rs, 940)] == [400, 400, 250]
    assert fill(rs, 0) == []
    counted = []

    def count(batch):
        counted.extend(batch)
        for r in batch:
            r.tokens = 100

    lazy = [rec("p", "document", 0, "g", i) for i in range(2000)]
    assert len(fill(lazy, 1000, count)) == 10
    assert len(counted) == 256  # one look-ahead batch, not the whole pool


def test_quotas_met_within_tolerance_and_spread():
    rng = random.Random(0)
    quotas = {("a", "document"): 80_000, ("a", "demonstration"): 20_000, ("b", "document"): 60_000,
              ("b", "demonstration"): 40_000}
    genres, kinds = ["news", "faq", "story", "memo"], ["direct", "indirect", "edge_case"]
    records = []
    for pid in ("a", "b"):
        records += [rec(pid, "document", rng.randint(300, 1200), rng.choice(genres), i) for i in range(200)]
        records += [rec(pid, "demonstration", rng.randint(100, 500), rng.choice(kinds), i) for i in range(300)]
    step = BudgetSelector(quotas, tolerance=0.03)
    kept = list(step(records))
    for q in step.report:
        assert abs(q["achieved"] - q["target"]) <= 0.03 * q["target"], q
        assert q["records"] == sum(1 for r in kept if (r.principle_id, r.kind) == (q["principle_id"], q["kind"]))
    assert abs(sum(r.tokens for r in kept) - 200_000) <= 6_000
    assert step.shortfall == {}
    assert step.drops[("over_quota", "a")] + step.drops[("over_quota", "b")] == len(records) - len(kept)
    # Spread: every genre and demo kind is represented about evenly in what was kept.
    docs = Counter(r.genre for r in kept if r.kind == "document" and r.principle_id == "a")
    assert max(docs.values()) - min(docs.values()) <= 2
    demos = Counter(r.demo_kind for r in kept if r.kind == "demonstration" and r.principle_id == "b")
    assert max(demos.values()) - min(demos.values()) <= 2
    # Deterministic whatever the input order.
    again = BudgetSelector(quotas)
    shuffled = records[:]
    rng.shuffle(shuffled)
    assert [r.id for r in again(shuffled)] == [r.id for r in kept]


def test_shortfall_and_unknown_principles():
    quotas = {("a", "document"): 10_000, ("a", "demonstration"): 1_000, ("b", "document"): 0}
    records = [rec("a", "document", 500, "g", i) for i in range(10)]
    records += [rec("a", "demonstration", 100, "direct", i) for i in range(10)]
    records += [rec("b", "document", 500, "g", 99), rec("zzz", "document", 500, "g", 100)]
    step = BudgetSelector(quotas, tolerance=0.03)
    kept = list(step(records))
    assert step.shortfall == {("a", "document"): 5_000}
    assert {(q["principle_id"], q["kind"]): (q["achieved"], q["records"]) for q in step.report} == {
        ("a", "document"): (5_000, 10),
        ("a", "demonstration"): (1_000, 10),
        ("b", "document"): (0, 0),
    }
    assert len(kept) == 20
    assert step.drops == {("over_quota", "b"): 1, ("unknown_principle", "zzz"): 1}
