"""What a run did, counted the same way by every executor: cache hits, calls, failures and the failure rate."""

from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass, field

from specc.errors import FailureRateError
from specc.generate.base import Generation
from specc.generate.pricing import cost_usd


@dataclass
class RunStats:
    """What a run did: calls made, cache hits, failures, tokens and cost."""

    calls: int = 0
    cached: int = 0
    failed: int = 0
    retries: int = 0
    not_run: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    saved_usd: float = 0.0  # what the cache hits would have cost at today's prices
    wall_s: float = 0.0
    per_stage: dict[str, dict] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def stage(self, name: str) -> dict:
        return self.per_stage.setdefault(
            name, {"calls": 0, "cached": 0, "failed": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "saved_usd": 0.0}
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def count_cached(stats: RunStats, prices: tuple[float, float], stage: str, gen: Generation, progress=None) -> None:
    """A task served from the cache (or by another task with the same key)."""
    saved = cost_usd(prices, gen.input_tokens, gen.output_tokens)
    st = stats.stage(stage)
    stats.cached += 1
    stats.saved_usd += saved
    st["cached"] += 1
    st["saved_usd"] += saved
    if progress:
        progress.update(stage, cached=True)


def count_call(
    stats: RunStats, prices: tuple[float, float], stage: str, gen: Generation, progress=None, max_usd: float | None = None
) -> bool:
    """A call the model answered; True when it brought the run's spending to ``max_usd``."""
    st = stats.stage(stage)
    cost = cost_usd(prices, gen.input_tokens, gen.output_tokens)
    stats.calls += 1
    stats.input_tokens += gen.input_tokens
    stats.output_tokens += gen.output_tokens
    stats.cost_usd += cost
    st["calls"] += 1
    st["input_tokens"] += gen.input_tokens
    st["output_tokens"] += gen.output_tokens
    st["cost_usd"] += cost
    if progress:
        progress.update(stage, input_tokens=gen.input_tokens, output_tokens=gen.output_tokens, cost=cost)
    return max_usd is not None and cost > 0 and stats.cost_usd >= max_usd


def count_failure(stats: RunStats, key: str, stage: str, principle_id: str, reason: str, progress=None) -> None:
    """A task that failed for good, with its reason."""
    stats.failed += 1
    stats.stage(stage)["failed"] += 1
    stats.failures.append({"key": key, "stage": stage, "principle_id": principle_id, "reason": reason})
    if progress:
        progress.update(stage, failed=True)


def check_failure_rate(stats: RunStats, max_rate: float, min_tasks: int) -> None:
    """Raise FailureRateError when more than ``max_rate`` of the finished tasks failed."""
    finished = stats.calls + stats.failed
    if finished >= min_tasks and stats.failed / finished > max_rate:
        reasons = collections.Counter(f["reason"] for f in stats.failures).most_common(5)
        summary = "; ".join(f"{n}x {why}" for why, n in reasons)
        raise FailureRateError(
            f"{stats.failed} of {finished} tasks failed (more than {max_rate:.0%}), so the run stopped. "
            f"Most common reasons: {summary}. Finished work is cached; fix the cause and rerun."
        )
