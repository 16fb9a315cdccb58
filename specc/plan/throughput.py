"""How fast the embedded model writes on this machine, for ``plan``'s wall-time estimate.

The embedded model costs nothing per token, so what a user needs before a build is how long it
takes. The generation cache already holds the answer: every result stores its ``output_tokens``,
its ``latency_s`` and the time it was stored (``created_at``), under the LLM id that made it.
Output tokens over the time the model was busy (the union of each call's interval, so calls that
queue behind one another are not counted twice) is its speed on this machine, prompt reading
included. With no cached call of this model, a default measured on a 2-core CPU stands in.
"""

from __future__ import annotations

from dataclasses import dataclass

# Output tokens per second of wall time of SmolLM2-135M (llama.cpp, OMP_WAIT_POLICY=PASSIVE) on a
# 2-core CPU shared with other work: a build of the support example (budget 1,500) made 5,968 output
# tokens in 57 calls at 28.8/s, prompt reading included; benchmarks/local.py's first 8 prompts (short
# answers, so prompt reading weighs more) 23.1/s. Rounded down, so a plan does not promise a build
# sooner than it comes.
DEFAULT_TOKENS_PER_S = 25.0


@dataclass(frozen=True)
class Throughput:
    """Output tokens per second, and the cached calls it was measured over (0: the default)."""

    tokens_per_s: float
    calls: int = 0

    @property
    def measured(self) -> bool:
        return self.calls > 0

    def seconds(self, output_tokens: int) -> float:
        return output_tokens / self.tokens_per_s

    def describe(self) -> str:
        if self.measured:
            return f"{self.tokens_per_s:,.1f} output tokens/s, measured over {self.calls:,} cached calls of this model"
        return (f"{self.tokens_per_s:g} output tokens/s, a default for the embedded model on a 2-core CPU "
                "(a build measures it on this machine; later plans use that)")


def measured(cache, llm_id: str) -> Throughput | None:
    """The speed of ``llm_id`` over its results in ``cache`` (a specc.generate.cache.Cache), or None if it has none."""
    if cache is None:
        return None
    with cache.reading() as db:
        rows = db.execute(
            "SELECT created_at - latency_s, created_at, output_tokens FROM generations "
            "WHERE llm = ? AND latency_s > 0 ORDER BY 1",
            (llm_id,),
        ).fetchall()
    busy, tokens, end = 0.0, 0, float("-inf")
    for start, stop, out in rows:
        tokens += out
        if stop > end:  # the part of this call's interval no earlier call covered
            busy += stop - max(start, end)
            end = stop
    if not rows or busy <= 0 or tokens <= 0:
        return None
    return Throughput(tokens / busy, len(rows))


def throughput(cache, llm_id: str) -> Throughput:
    """The measured speed of ``llm_id`` if the cache has its calls, else the default."""
    return measured(cache, llm_id) or Throughput(DEFAULT_TOKENS_PER_S)


def duration(seconds: float) -> str:
    """``about 40 seconds``, ``about 43 minutes``, ``about 2.5 hours``: an estimate's precision, no more."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} seconds"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} minutes"
    return f"about {seconds / 3600:.1f} hours"
