"""Paired comparison of two configurations on the same examples.

The p-value is a paired randomization test (Noreen 1989; the approximate randomization of
sacrebleu's paired test and Riezler & Maxwell 2005): under "no difference" the two configurations'
per-example rows are exchangeable within each example, so swapping them on any subset of examples
gives a difference as likely as the observed one. p is the share of swaps whose difference is at
least as large (in absolute value) as the observed one. Only examples whose rows differ can move
the statistic, so with up to EXACT_LIMIT differing examples every one of the 2^m swaps is
enumerated (the test is exact; for 0/1 scores it is the exact McNemar / sign test), and beyond
that a seeded Monte Carlo sample with the +1 correction keeps p valid. It works for corpus-level
metrics (perplexity, micro F1, BLEU) as well as means, since a swap only moves column sums.

The interval is the paired percentile bootstrap's. It describes the size of the difference; the
test decides. The one-sided bounds (non-inferiority) are the bootstrap's too, except for a mean of
0/1 scores, where they are exact: Clopper–Pearson bounds on the share of examples each side wins
alone, combined with Bonferroni's split (the bootstrap is overconfident when few examples change). Where the two disagree (few differing examples, where the bootstrap is
overconfident) `PairedDifference.interval_agrees` is False and renderers say so beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from stats.intervals import (
    CONFIDENCE,
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_RESAMPLES,
    check_sample,
    clopper_pearson,
    percentile_interval,
    resample_counts,
)
from stats.statistic import SumStatistic, as_rows

# 2^16 = 65,536 swaps enumerate in a few milliseconds; p is then exact down to 1/65,536.
EXACT_LIMIT = 16
DEFAULT_PERMUTATIONS = 9999
# Differences of swapped sums carry rounding; a swap whose |difference| is within this relative
# distance of the observed one counts as "as extreme" (else ties, e.g. the identity, could be lost).
_TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PairedDifference:
    """statistic(b) − statistic(a) on the same examples: the test's p and the bootstrap's interval."""

    difference: float
    ci_low: float          # two-sided 95% percentile bootstrap interval
    ci_high: float
    p_value: float         # two-sided paired randomization test
    n: int
    n_differing: int       # examples whose rows differ between a and b
    min_p_value: float     # the smallest p any outcome on n_differing examples could give
    exact: bool            # every swap enumerated (else Monte Carlo)
    bound_low: float       # one-sided 95% bounds, for non-inferiority
    bound_high: float
    exact_bounds: bool = False  # the bounds are exact (0/1 scores), not the bootstrap's

    def can_reach(self, alpha: float) -> bool:
        """Whether some outcome on these examples could be significant at `alpha`."""
        return self.min_p_value <= alpha

    def interval_agrees(self, alpha: float) -> bool:
        """Whether the interval excludes 0 exactly when the test is significant."""
        excludes_zero = self.ci_low > 0 or self.ci_high < 0
        return excludes_zero == (self.p_value <= alpha)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RandomizationTest:
    p_value: float
    n_differing: int
    min_p_value: float
    exact: bool


def paired_test(stats_a: Sequence | np.ndarray, stats_b: Sequence | np.ndarray, statistic: SumStatistic, *,
                n_resamples: int = DEFAULT_RESAMPLES, n_permutations: int = DEFAULT_PERMUTATIONS,
                seed: int = DEFAULT_BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> PairedDifference:
    """The difference statistic(b) − statistic(a), row i of a and b being the same example."""
    a, b = _paired_rows(stats_a, stats_b)
    check_sample(len(a), n_resamples, confidence)
    test = randomization_test(a, b, statistic, n_permutations=n_permutations, seed=seed)
    replicates = _bootstrap_differences(a, b, statistic, n_resamples, seed)
    low, high = percentile_interval(replicates, confidence)
    exact_bounds = _binary_mean(a, b, statistic)
    if exact_bounds:
        bound_low, bound_high = _exact_binary_bounds(a[:, statistic.mean_column], b[:, statistic.mean_column],
                                                     confidence)
    else:
        # One-sided bounds at `confidence` are the two-sided interval at 2·confidence − 1 (5% per tail).
        bound_low, bound_high = percentile_interval(replicates, 2 * confidence - 1)
    return PairedDifference(difference=statistic(b) - statistic(a), ci_low=low, ci_high=high,
                            p_value=test.p_value, n=len(a), n_differing=test.n_differing,
                            min_p_value=test.min_p_value, exact=test.exact, bound_low=bound_low,
                            bound_high=bound_high, exact_bounds=exact_bounds)


def _binary_mean(a: np.ndarray, b: np.ndarray, statistic: SumStatistic) -> bool:
    column = statistic.mean_column
    return column is not None and all(np.isin(side[:, column], (0.0, 1.0)).all() for side in (a, b))


def _exact_binary_bounds(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float]:
    """One-sided bounds of mean(b) − mean(a) for 0/1 scores: (share b wins alone) − (share a wins alone).

    Each share gets a Clopper–Pearson bound at 1 − (1 − confidence)/2, so both hold together with
    probability at least `confidence` (Bonferroni), at any n.
    """
    n = len(a)
    b_low, b_high = clopper_pearson(int(np.sum((b == 1) & (a == 0))), n, confidence)
    a_low, a_high = clopper_pearson(int(np.sum((a == 1) & (b == 0))), n, confidence)
    return b_low - a_high, b_high - a_low


def randomization_test(stats_a: Sequence | np.ndarray, stats_b: Sequence | np.ndarray, statistic: SumStatistic, *,
                       n_permutations: int = DEFAULT_PERMUTATIONS, seed: int = DEFAULT_BOOTSTRAP_SEED,
                       exact_limit: int = EXACT_LIMIT) -> RandomizationTest:
    """Two-sided paired randomization test of "a and b are exchangeable example by example"."""
    a, b = _paired_rows(stats_a, stats_b)
    n = len(a)
    sum_a, sum_b = a.sum(axis=0), b.sum(axis=0)
    observed = abs(float(statistic.of_sums(sum_b, n) - statistic.of_sums(sum_a, n)))
    differing = np.flatnonzero(np.any(a != b, axis=1))
    m = len(differing)
    if m == 0:
        return RandomizationTest(1.0, 0, 1.0, True)
    exact = m <= exact_limit
    swaps = _all_swaps(m) if exact else np.random.default_rng(seed).integers(0, 2, size=(n_permutations, m))
    moved = swaps @ (b - a)[differing]
    replicates = np.abs(statistic.of_sums(sum_b - moved, n) - statistic.of_sums(sum_a + moved, n))
    extreme = int(np.count_nonzero(replicates >= observed * (1 - _TIE_TOLERANCE)))
    if exact:
        most = int(np.count_nonzero(replicates >= replicates.max() * (1 - _TIE_TOLERANCE)))
        return RandomizationTest(extreme / len(swaps), m, most / len(swaps), True)
    return RandomizationTest((extreme + 1) / (n_permutations + 1), m, 1 / (n_permutations + 1), False)


def _bootstrap_differences(a: np.ndarray, b: np.ndarray, statistic: SumStatistic, n_resamples: int,
                           seed: int) -> np.ndarray:
    """statistic(b*) − statistic(a*) over paired resamples (the same examples drawn on both sides)."""
    counts = resample_counts(len(a), n_resamples, seed)
    return statistic.of_sums(counts @ b, len(a)) - statistic.of_sums(counts @ a, len(a))


@lru_cache(maxsize=EXACT_LIMIT + 1)
def _all_swaps(m: int) -> np.ndarray:
    """Every subset of m examples as a (2^m, m) 0/1 matrix."""
    codes = np.arange(2 ** m, dtype=np.int64)[:, None]
    return ((codes >> np.arange(m)) & 1).astype(float)


def _paired_rows(stats_a, stats_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_rows(stats_a), as_rows(stats_b)
    if a.shape != b.shape:
        raise ValueError(f"a paired test needs the same examples on both sides: {len(a)} vs {len(b)} rows")
    return a, b
