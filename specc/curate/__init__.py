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

# Below this many new records, starting workers costs more than analysing them in this process saves.
_POOL_MIN_RECORDS = 2_000
# Records analysed at once in one process: bounds the normalised copies held in memory.
_CHUNK = 4_096


def _count(tokenizer, records: list[Record]) -> list[int]:
    from specc.tokens import render_chat

    count_batch = getattr(tokenizer, "count_batch", None)
    out: list[int] = []
    for i in range(0, len(records), 512):  # bounded batches: the token lists of a whole corpus would not fit
        texts = [r.text if r.kind == "document" else render_chat(r.messages) for r in records[i : i + 512]]
        out += count_batch(texts) if count_batch else [tokenizer.count(t) for t in texts]
    return out


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
        self.scaffold = None  # built on the first run
        # What each step learnt about each record (Step.known), kept across rounds: a top-up round
        # curates every earlier record again, unchanged, and only its new records are analysed.
        self._known: dict[str, dict] = {"exact_dedup": {}, "near_dedup": {}}
        self._analysed: set[str] = set()

    def count_tokens(self, records: list[Record]) -> None:
        """Set ``tokens`` on records that have none: documents by text, demonstrations as chat."""
        todo = [r for r in records if not r.tokens]
        for r, n in zip(todo, _count(self.tokenizer, todo)):
            r.tokens = n

    def analyse(self, records: list[Record], steps: list[Step]) -> None:
        """Count tokens and compute every step's facts for the records not analysed before.

        The work is per record, so big inputs are split over forked workers (one per core) that read
        the records from inherited memory and send back only counts, reasons, digests and signatures.
        Each text is normalised once for every step that compares text.
        """
        from specc.curate.base import Normalised, map_spans

        todo = [r for r in records if r.id not in self._analysed]
        if not todo:
            return
        for step in steps:
            step.prepare()  # models and tables loaded once, here, for every worker to inherit
        tokenizer = self.tokenizer

        def facts(span: list[Record]) -> list[tuple]:
            out = []
            for i in range(0, len(span), _CHUNK):
                chunk = span[i : i + _CHUNK]
                texts = Normalised(chunk)
                out.append((_count(tokenizer, chunk), [step.facts(chunk, texts) for step in steps]))
            return out

        at = 0
        for counts, found in map_spans(facts, todo, min_items=_POOL_MIN_RECORDS):
            chunk = todo[at : at + len(counts)]
            at += len(counts)
            for r, n in zip(chunk, counts):
                r.tokens = r.tokens or n
            for step, step_facts in zip(steps, found):
                if step_facts is not None:
                    step.known.update(zip((r.id for r in chunk), step_facts))
            self._analysed.update(r.id for r in chunk)

    def run(self, records: Iterable[Record]) -> CurateResult:
        """Filter, dedup, decontaminate and select ``records`` to the budget."""
        from specc.curate.budget import BudgetSelector
        from specc.curate.dedup import ExactDedup, NearDedup
        from specc.curate.scaffold import ScaffoldFilter

        # Sorted first so every "keep the first" rule keeps the same record whatever order
        # generation finished in.
        ordered = sorted(records, key=lambda r: (r.id, r.principle_id))
        # Counters start from zero on every run; the loaded eval tables are reused.
        if self.scaffold is None:
            self.scaffold = ScaffoldFilter.from_spec(self.spec)
        for step in (self.filter, self.scaffold, self.decontam):
            step.drops, step.kind_drops, step.rejected = Counter(), Counter(), []
        self.decontam.by_source = Counter()
        steps: list[Step] = [self.filter, self.scaffold]
        near = NearDedup(**self._near_args, workers=1)  # the analysis spreads its work, not the step
        if self.dedup:
            exact = ExactDedup()
            exact.known, near.known = self._known["exact_dedup"], self._known["near_dedup"]
            steps += [exact, near]
        steps.append(self.decontam)
        self.analyse(ordered, steps)  # tokens and per-record facts, once per record
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
