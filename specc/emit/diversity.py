"""A simple lexical diversity figure per principle: distinct word 4-grams per 1,000 words of kept text.

Measured on a fixed-size sample (the first ``SAMPLE_WORDS`` words in the shards' seeded
order), so principles with more text are not penalised for it and the figure is cheap at
any corpus size. A principle far below the others repeats itself: the report flags it.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable

N = 4
SAMPLE_WORDS = 20_000
LOW = 0.6  # flagged below this share of the median of the principles
METRIC = f"distinct word {N}-grams per 1,000 words (first {SAMPLE_WORDS:,} words of each principle's kept text)"
_WORD = re.compile(r"\w+")


def distinct_ngrams_per_1k(texts: Iterable[str], n: int = N, sample: int = SAMPLE_WORDS) -> float | None:
    """Distinct word n-grams per 1,000 words over the first ``sample`` words of ``texts``; None under n words."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        if total >= sample:
            break
        words = _WORD.findall(text.lower())[: sample - total]
        seen.update(zip(*(words[i:] for i in range(n))))
        total += len(words)
    return round(1000 * len(seen) / total, 1) if total >= n else None


def low_principles(figures: dict[str, float | None], low: float = LOW) -> list[str]:
    """Principles whose figure is below ``low`` × the median of all (with at least three to compare)."""
    known = {pid: v for pid, v in figures.items() if v is not None}
    if len(known) < 3:
        return []
    median = statistics.median(known.values())
    return [pid for pid, v in known.items() if v < low * median]


def principle_diversity(rows: dict, pids: list[str], expansion: dict) -> tuple[dict[str, dict], dict]:
    """Per principle: facets (planned, covered by kept rows), document types used, and the diversity figures.

    ``rows`` are the emitted rows per config (``SizedRow``); ``expansion`` is what the build
    reports per principle (facets and document types it planned).
    """
    texts: dict[tuple[str, str], list[str]] = {}
    facets: dict[str, set] = {pid: set() for pid in pids}
    types: dict[str, set] = {pid: set() for pid in pids}
    for config in ("documents", "demonstrations"):
        for r in rows.get(config, []):
            row = r.row
            pid = row["principle_id"]
            if row.get("facet"):
                facets.setdefault(pid, set()).add(row["facet"])
            if config == "documents":
                types.setdefault(pid, set()).add(row.get("genre"))
                texts.setdefault((pid, config), []).append(row["text"])
            else:
                texts.setdefault((pid, config), []).append("\n".join(m["content"] for m in row["messages"]))
    figures = {c: {pid: distinct_ngrams_per_1k(texts.get((pid, c), ())) for pid in pids}
               for c in ("documents", "demonstrations")}
    low = {c: low_principles(figures[c]) for c in figures}
    out = {}
    for pid in pids:
        planned = expansion.get(pid) or {}
        out[pid] = {
            "facets": planned.get("facets"),
            "facets_covered": len(facets.get(pid, ())),
            "doc_types_planned": planned.get("doc_types"),
            "doc_types_used": len(types.get(pid, ())),
            "distinct_4grams_per_1k_words": {c: figures[c][pid] for c in figures},
            "low_diversity": [c for c in figures if pid in low[c]],
        }
    medians = {c: (statistics.median(v for v in figures[c].values() if v is not None)
                   if any(v is not None for v in figures[c].values()) else None) for c in figures}
    return out, {"metric": METRIC, "median": medians, "low": low, "threshold": LOW}
