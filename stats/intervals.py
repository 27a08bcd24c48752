"""Confidence intervals by bootstrap over examples.

Resampling rows and recomputing the statistic gives intervals for corpus-level figures too — micro
F1, corpus BLEU, corpus-weighted perplexity — not only for means. A resample is a vector of counts
(how often each example was drawn), so its column sums are `counts @ rows`, all resamples at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from stats.statistic import SumStatistic, as_rows

DEFAULT_RESAMPLES = 1000
DEFAULT_BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Metric:
    """A metric's value on all examples and its bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def bootstrap_ci(per_example_stats: Sequence | np.ndarray, statistic: SumStatistic, *,
                 n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_BOOTSTRAP_SEED,
                 confidence: float = CONFIDENCE) -> Metric:
    """Percentile bootstrap interval of `statistic` over resampled examples."""
    rows = as_rows(per_example_stats)
    n = check_sample(len(rows), n_resamples, confidence)
    replicates = statistic.of_sums(resample_counts(n, n_resamples, seed) @ rows, n)
    low, high = percentile_interval(replicates, confidence)
    return Metric(value=statistic(rows), ci_low=low, ci_high=high, n=n)


def bootstrap_metrics(per_example_stats: Sequence | np.ndarray, statistics: dict[str, SumStatistic], *,
                      n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_BOOTSTRAP_SEED,
                      confidence: float = CONFIDENCE) -> dict[str, Metric]:
    """`bootstrap_ci` for several statistics of the same rows (the same resamples for each)."""
    return {name: bootstrap_ci(per_example_stats, statistic, n_resamples=n_resamples, seed=seed,
                               confidence=confidence)
            for name, statistic in statistics.items()}


def clopper_pearson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a share of `successes` in `n`: each tail at most (1 − confidence)/2, at any n."""
    from scipy.stats import beta  # here: scipy.stats takes ~0.5 s to import, and `suite validate` imports this module

    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, n - successes + 1))
    high = 1.0 if successes == n else float(beta.ppf(1 - tail, successes + 1, n - successes))
    return low, high


def resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) draw counts: row r says how often each example is in resample r.

    Drawn as indices (one row of n draws with replacement per resample) and counted, so a seed
    gives the same resamples as indexing the rows would.
    """
    indices = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    counts = np.zeros((n_resamples, n))
    np.add.at(counts, (np.repeat(np.arange(n_resamples), n), indices.ravel()), 1.0)
    return counts


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(low), float(high)


def check_sample(n: int, n_resamples: int, confidence: float) -> int:
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return n
