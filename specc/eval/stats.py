"""The two statistics an eval needs: a Wilson score interval and a two-proportion z-test, exact to float precision.

Written out rather than imported: numpy has no normal quantile and scipy is not a dependency,
and both formulas are a few lines whose values are checked against published ones in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The 97.5th percentile of the standard normal: a two-sided 95 % interval or test.
Z95 = 1.959963984540054


def wilson(passes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``passes`` out of ``n``; (0, 1) when there is nothing to measure."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= passes <= n:
        raise ValueError(f"passes must be between 0 and n (got {passes} of {n})")
    p = passes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At 0 or n passes one bound is exactly 0 or 1; say so rather than leave the float noise.
    lo = 0.0 if passes == 0 else max(0.0, centre - half)
    hi = 1.0 if passes == n else min(1.0, centre + half)
    return (lo, hi)


@dataclass(frozen=True)
class Difference:
    """B's pass rate minus A's, with the pooled two-proportion z-test of "no difference"."""

    rate_a: float
    rate_b: float
    diff: float
    z: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def two_proportions(passes_a: int, n_a: int, passes_b: int, n_b: int) -> Difference:
    """Compare two pass rates; with no items, or no variation at all, the difference is not significant (p = 1)."""
    rate_a = passes_a / n_a if n_a else 0.0
    rate_b = passes_b / n_b if n_b else 0.0
    if not n_a or not n_b:
        return Difference(rate_a, rate_b, rate_b - rate_a, 0.0, 1.0)
    pooled = (passes_a + passes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:  # both all-pass or both all-fail: identical
        return Difference(rate_a, rate_b, rate_b - rate_a, 0.0, 1.0)
    z = (rate_b - rate_a) / se
    return Difference(rate_a, rate_b, rate_b - rate_a, z, math.erfc(abs(z) / math.sqrt(2)))
