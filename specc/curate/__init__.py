"""The curation pass: quality and scaffolding filters, exact and near dedup, decontamination, token budget."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from specc.curate.base import Step
from specc.records import Record

if TYPE_CHECKING:
    from specc.spec.schema import Spec
    from specc.tokens import Tokenizer

# The steps are imported when a Curator is built, not with the package: the spawned language
# workers import specc.curate.filters, and datasketch (with scipy) would double their start-up.

__all__ = ["CurateResult", "Curator", "Step"]

# Below this many records, starting workers costs more than counting in this process saves.
_POOL_MIN_RECORDS = 8_000
_INHERITED: tuple | None = None  # (tokenizer, records) for forked counting workers


def _count(tokenizer, records: list[Record]) -> list[int]:
    from specc.tokens import render_chat

    count_batch = getattr(tokenizer, "count_batch", None)
    out: list[int] = []
    for i in range(0, len(records), 512):  # bounded batches: the token lists of a whole corpus would not fit
        texts = [r.text if r.kind == "document" else render_chat(r.messages) for r in records[i : i + 512]]
        out += count_batch(texts) if count_batch else [tokenizer.count(t) for t in texts]
    return out


def _count_span(span: tuple[int, int]) -> list[int]:
    tokenizer, records = _INHERITED
    return _count(tokenizer, records[span[0] : span[1]])


def _count_forked(tokenizer, records: list[Record]) -> list[int] | None:
    """Token counts from forked workers, or None where forking is not safe or possible (then count here)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from specc.curate.base import process_context

    workers = os.cpu_count() or 1
    ctx = process_context()
    if workers < 2 or ctx.get_start_method() != "fork":
        return None  # spawned workers would pickle every text and load the tokenizer again
    global _INHERITED
    step = max(1, -(-len(records) // (4 * workers)))  # a few spans per worker evens out their speed
    spans = [(i, min(i + step, len(records))) for i in range(0, len(records), step)]
    _INHERITED = (tokenizer, records)
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            return [n for part in pool.map(_count_span, spans) for n in part]
    except (BrokenProcessPool, OSError, multiprocessing.ProcessError):
        return None
    finally:
        _INHERITED = None


@dataclass
class CurateResult:
    """What curation kept, what it dropped and why, and how close each quota came to its target."""

    kept: list[Record]
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_by_principle: dict[str, Counter[str]] = field(default_factory=dict)
    dropped_by_slot: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)  # (principle, kind)
    curated: Counter[tuple[str, str]] = field(default_factory=Counter)  # records in, by (principle, kind)
    quotas: list[dict] = field(default_factory=list)
    shortfall: dict[tuple[str, str], int] = field(default_factory=dict)
    wanting: dict[tuple[str, str], int] = field(default_factory=dict)  # the shortfalls a top-up round can close
    dedup_params: dict = field(default_factory=dict)
    decontam_sources: dict[str, int] = field(default_factory=dict)  # eval source -> records dropped
    rejected: list[tuple[Record, str]] = field(default_factory=list)  # (record, "step:reason"), for OUT/dropped/

    def to_dict(self) -> dict:
        return {
            "kept": len(self.kept),
            "kept_tokens": sum(r.tokens for r in self.kept),
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_by_principle": {p: dict(sorted(c.items())) for p, c in sorted(self.dropped_by_principle.items())},
            "quotas": [dict(q) for q in self.quotas],
            "shortfall": [
                {"principle_id": p, "kind": k, "missing_tokens": v} for (p, k), v in sorted(self.shortfall.items())
            ],
            "dedup_params": dict(self.dedup_params),
            "decontam_sources": dict(sorted(self.decontam_sources.items())),
        }


class Curator:
    """Builds every step from ``spec.corpus`` and runs records through them in a fixed order."""

    def __init__(self, spec: Spec, *, tokenizer: Tokenizer | None = None, tolerance: float = 0.03) -> None:
        from specc.curate.decontam import Decontaminator
        from specc.curate.filters import QualityFilter
        from specc.plan.quotas import compute_quotas
        from specc.tokens import get_tokenizer

        corpus = spec.corpus
        self.spec = spec
        self.tolerance = tolerance
        self.tokenizer = tokenizer or get_tokenizer(corpus.budget.tokenizer, spec.base_dir)
        self.filter = QualityFilter.from_spec(spec)
        self.dedup = corpus.dedup.enabled
        self._near_args = dict(
            threshold=corpus.dedup.threshold, num_perm=corpus.dedup.num_perm, ngram=corpus.dedup.ngram
        )
        # Built now so a missing or malformed eval file fails before any work is done.
        self.decontam = Decontaminator.from_spec(spec)
        self.quotas = compute_quotas(spec)
        self.scaffold = None  # built on the first run; it keeps its verdicts for the next rounds

    def count_tokens(self, records: list[Record]) -> None:
        """Set ``tokens`` on records that have none: documents by text, demonstrations as chat.

        Many records are counted on forked worker processes (one per core), which read the records
        from inherited memory and send back only the counts.
        """
        todo = [r for r in records if not r.tokens]
        counts = _count_forked(self.tokenizer, todo) if len(todo) >= _POOL_MIN_RECORDS else None
        if counts is None:
            counts = _count(self.tokenizer, todo)
        for r, n in zip(todo, counts):
            r.tokens = n

    def run(self, records: Iterable[Record]) -> CurateResult:
        """Filter, dedup, decontaminate and select ``records`` to the budget."""
        from specc.curate.budget import BudgetSelector
        from specc.curate.dedup import ExactDedup, NearDedup
        from specc.curate.scaffold import ScaffoldFilter

        # Sorted first so every "keep the first" rule keeps the same record whatever order
        # generation finished in.
        ordered = sorted(records, key=lambda r: (r.id, r.principle_id))
        self.count_tokens(ordered)  # once, in batches: the stages leave it to curation
        # Counters start from zero on every run; the loaded eval tables are reused.
        if self.scaffold is None:
            self.scaffold = ScaffoldFilter.from_spec(self.spec)
        for step in (self.filter, self.scaffold, self.decontam):
            step.drops, step.kind_drops, step.rejected = Counter(), Counter(), []
        self.decontam.by_source = Counter()
        steps: list[Step] = [self.filter, self.scaffold]
        near = NearDedup(**self._near_args)
        if self.dedup:
            steps += [ExactDedup(), near]
        steps.append(self.decontam)
        budget = BudgetSelector(
            self.quotas, tolerance=self.tolerance, seed=self.spec.corpus.seed, count=self.count_tokens
        )

        stream: Iterable[Record] = ordered
        for step in steps:
            stream = step(stream)
        kept = list(budget(stream))
        steps.append(budget)

        dropped: Counter[str] = Counter()
        by_principle: dict[str, Counter[str]] = {}
        by_slot: dict[tuple[str, str], Counter[str]] = {}
        rejected: list[tuple[Record, str]] = []
        for step in steps:
            for (reason, pid), n in step.drops.items():
                key = f"{step.name}:{reason}"
                dropped[key] += n
                by_principle.setdefault(pid, Counter())[key] += n
            for (reason, pid, kind), n in step.kind_drops.items():
                by_slot.setdefault((pid, kind), Counter())[f"{step.name}:{reason}"] += n
            rejected += [(r, f"{step.name}:{why}") for r, why in step.rejected]
        return CurateResult(
            kept=kept,
            dropped=dropped,
            dropped_by_principle=by_principle,
            dropped_by_slot=by_slot,
            curated=Counter((r.principle_id, r.kind) for r in ordered),
            quotas=budget.report,
            shortfall=budget.shortfall,
            wanting=budget.wanting,
            dedup_params={**near.params, "enabled": self.dedup},
            decontam_sources=dict(self.decontam.by_source),
            rejected=rejected,
        )
