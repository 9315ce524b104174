"""How far a benchmark figure could move by chance: 95 % intervals for a share of clips
and for a count of events an hour, and a paired test for two systems on the same clips.

They count only the sampling of clips and events: the voices, the noise draws and the
training seed move figures too (docs/experiments.md measures how far).
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a share of `successes` in `trials` (95 % by default);
    unlike the normal approximation it stays inside 0-1 and works at 0 and at all."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes in {trials} trials")
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _poisson_cdf(k: int, mean: float) -> float:
    """P(X <= k) for X ~ Poisson(mean)."""
    if mean <= 0:
        return 1.0
    log_mean = math.log(mean)
    return min(1.0, math.fsum(math.exp(i * log_mean - mean - math.lgamma(i + 1))
                              for i in range(k + 1)))


def _solve_mean(k: int, target: float) -> float:
    """The Poisson mean at which P(X <= k) equals `target` (it falls as the mean grows)."""
    lo, hi = 0.0, k + 10 * math.sqrt(k + 1) + 10
    for _ in range(100):
        mid = (lo + hi) / 2
        if _poisson_cdf(k, mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def poisson_interval(count: int, exposure: float = 1.0,
                     level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval for a rate: `count` events in `exposure` (hours, say)."""
    if count < 0 or exposure <= 0:
        raise ValueError(f"{count} events in {exposure}")
    tail = (1 - level) / 2
    low = 0.0 if count == 0 else _solve_mean(count - 1, 1 - tail)
    return low / exposure, _solve_mean(count, tail) / exposure


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value for two systems on the same clips: `only_first`
    clips right for the first alone, `only_second` for the second alone. Small means
    the difference is unlikely to be chance."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = math.fsum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def percent_interval(successes: int, trials: int) -> str:
    """'96.5-98.1 %': the Wilson interval of a share, in percent."""
    lo, hi = wilson_interval(successes, trials)
    return f"{100 * lo:.1f}-{100 * hi:.1f} %"
