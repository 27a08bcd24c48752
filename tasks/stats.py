"""Confidence intervals by bootstrap over examples, and paired comparison of two configurations.

Every metric is a function of per-example *sufficient statistics* (a row per example: a 0/1
correctness, or tp/fp/fn counts, or log-likelihood and token count). Resampling rows and
recomputing the statistic gives intervals for corpus-level figures too — micro F1, corpus BLEU,
corpus-weighted perplexity — not only for means.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Metric:
    """A metric's value on all examples and its bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """statistic(b) - statistic(a) on the same examples, its interval and two-sided p-value."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


Statistic = Callable[[Any], float]


def bootstrap_ci(per_example_stats: Sequence | np.ndarray, statistic: Statistic, *,
                 n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_BOOTSTRAP_SEED,
                 confidence: float = 0.95) -> Metric:
    """Percentile bootstrap interval of `statistic` over resampled examples.

    `per_example_stats` is a numpy array (rows = examples) or a list; `statistic` receives the
    same kind of container holding a resample of the rows and returns a float.
    """
    n = _check_sample(per_example_stats, n_resamples, confidence)
    value = float(statistic(per_example_stats))
    indices = _resample_indices(n, n_resamples, seed)
    replicates = np.array([statistic(_take(per_example_stats, row)) for row in indices], dtype=float)
    low, high = _percentile_interval(replicates, confidence)
    return Metric(value=value, ci_low=low, ci_high=high, n=n)


def paired_bootstrap(stats_a: Sequence | np.ndarray, stats_b: Sequence | np.ndarray, statistic: Statistic, *,
                     n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_BOOTSTRAP_SEED,
                     confidence: float = 0.95) -> PairedDifference:
    """Difference statistic(b) - statistic(a) where row i of a and b is the same example.

    Both sides are resampled with the same indices, so per-example difficulty cancels out. The
    p-value tests "no difference" by centring the bootstrap distribution on zero (the shift
    method): p = share of |d* - d| >= |d|, with the +1 correction that keeps it above zero.
    """
    n = _check_sample(stats_a, n_resamples, confidence)
    if len(stats_b) != n:
        raise ValueError(f"paired bootstrap needs the same examples on both sides: {n} vs {len(stats_b)} rows")
    observed = float(statistic(stats_b)) - float(statistic(stats_a))
    indices = _resample_indices(n, n_resamples, seed)
    replicates = np.array([statistic(_take(stats_b, row)) - statistic(_take(stats_a, row)) for row in indices],
                          dtype=float)
    low, high = _percentile_interval(replicates, confidence)
    extreme = np.count_nonzero(np.abs(replicates - observed) >= abs(observed) - 1e-12)
    p_value = 1.0 if observed == 0 else (extreme + 1) / (n_resamples + 1)
    return PairedDifference(difference=observed, ci_low=low, ci_high=high, p_value=float(p_value), n=n)


def bootstrap_metrics(per_example_stats: Sequence | np.ndarray, statistics: dict[str, Statistic], *,
                      n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_BOOTSTRAP_SEED,
                      confidence: float = 0.95) -> dict[str, Metric]:
    """`bootstrap_ci` for several statistics of the same rows (same resamples for each)."""
    return {name: bootstrap_ci(per_example_stats, statistic, n_resamples=n_resamples, seed=seed,
                               confidence=confidence)
            for name, statistic in statistics.items()}


def mean_statistic(column: int = 0) -> Statistic:
    """The mean of one column of a 2-D stats array (or of a 1-D array)."""
    def mean(stats: np.ndarray) -> float:
        stats = np.asarray(stats, dtype=float)
        return float(stats.mean() if stats.ndim == 1 else stats[:, column].mean())
    return mean


# z for a two-sided 5% test and for 80% power: the usual minimum-detectable-effect quantiles.
_Z_ALPHA, _Z_POWER = 1.959964, 0.841621


def detectable_difference(ci_low: float, ci_high: float) -> float:
    """The smallest difference between two configurations a test at this n would find 4 times in 5.

    From one configuration's 95% interval: its half-width / 1.96 is the standard error of the
    metric; two independent configurations differ with √2 times that; a two-sided 5% test with
    80% power needs (1.96 + 0.84) standard errors. Paired tests on the same examples do better
    when configurations agree example by example, so this is an upper bound that needs no pairs.
    """
    standard_error = (ci_high - ci_low) / 2 / _Z_ALPHA
    return (_Z_ALPHA + _Z_POWER) * math.sqrt(2) * standard_error


def safe_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0 when the denominator is 0 (precision with no predictions)."""
    return float(numerator / denominator) if denominator else 0.0


def _check_sample(stats, n_resamples: int, confidence: float) -> int:
    n = len(stats)
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return n


def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _take(stats, rows: np.ndarray):
    if isinstance(stats, np.ndarray):
        return stats[rows]
    return [stats[i] for i in rows]


def _percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(low), float(high)
