"""Calibration by simulation: A/A comparisons are false positives at most α; planted effects are found.

Each regime draws pairs of exchangeable configurations (A/A: per example the two rows are the same
with probability `agreement`, else two draws of one distribution), runs the paired test and counts
rejections. Monte-Carlo slack is three binomial standard errors of the replication count. The old
shift-method bootstrap fails these (tests' docstring in the issue-24 note has its figures).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from stats.multiplicity import adjust
from stats.paired import paired_test, randomization_test
from stats.statistic import SumStatistic, mean_of
from stats.verdicts import NON_INFERIOR, gate_decision

ALPHA = 0.05
REPLICATIONS = 300
# The simulations need valid p-values, not fine ones: 999 swaps keep them valid and fast.
SWAPS = 999
PERPLEXITY = SumStatistic(lambda sums, n: np.exp(-sums[..., 0] / sums[..., 1]))


def slack(replications: int, rate: float = ALPHA) -> float:
    return 3 * math.sqrt(rate * (1 - rate) / replications)


def binary_pair(rng, n: int, agreement: float) -> tuple[np.ndarray, np.ndarray]:
    same = rng.random(n) < agreement
    both = (rng.random(n) < 0.6).astype(float)
    first = rng.random(n) < 0.5
    return np.where(same, both, first.astype(float)), np.where(same, both, (~first).astype(float))


def continuous_pair(rng, n: int, agreement: float) -> tuple[np.ndarray, np.ndarray]:
    a = rng.beta(2, 3, n)
    return a, np.where(rng.random(n) < agreement, a, rng.beta(2, 3, n))


def corpus_pair(rng, n: int, agreement: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows [log-likelihood, tokens] of documents; a disagreeing document gets a fresh log-likelihood."""
    tokens = rng.integers(20, 200, n).astype(float)
    a = -rng.normal(2.0, 0.4, n) * tokens
    b = np.where(rng.random(n) < agreement, a, -rng.normal(2.0, 0.4, n) * tokens)
    first = rng.random(n) < 0.5  # which of the two draws each side got: exchangeable
    return (np.column_stack([np.where(first, a, b), tokens]), np.column_stack([np.where(first, b, a), tokens]))


KINDS = {"binary": (binary_pair, mean_of()), "continuous": (continuous_pair, mean_of()),
         "perplexity": (corpus_pair, PERPLEXITY)}


def rejection_rate(kind: str, n: int, agreement: float, seed: int, replications: int = REPLICATIONS) -> float:
    draw, statistic = KINDS[kind]
    rng = np.random.default_rng(seed)
    rejected = 0
    for replication in range(replications):
        a, b = draw(rng, n, agreement)
        rejected += randomization_test(a, b, statistic, n_permutations=SWAPS, seed=replication).p_value <= ALPHA
    return rejected / replications


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("n", [1, 3, 5, 10, 16, 48, 200, 500])
@pytest.mark.parametrize("agreement", [0.5, 0.8, 0.95, 0.99])
def test_a_a_false_positive_rate_is_at_most_alpha(kind, n, agreement):
    if kind != "binary" and n == 500 and agreement < 0.9:
        pytest.skip("covered at n = 200: the same regime, only slower")
    rate = rejection_rate(kind, n, agreement, seed=n * 1000 + int(agreement * 100))
    assert rate <= ALPHA + slack(REPLICATIONS), f"{kind} n={n} agreement={agreement}: {rate:.3f}"


def test_family_wise_error_of_a_corrected_gate_is_at_most_alpha():
    """22 A/A tests (the man-pages suite's metric count) per comparison: Holm holds the family, none does not."""
    rng = np.random.default_rng(11)
    families, size = 200, 22
    any_raw = any_holm = 0
    for family in range(families):
        p = [randomization_test(*binary_pair(rng, 48, 0.8), mean_of(), n_permutations=SWAPS,
                                seed=family * size + i).p_value for i in range(size)]
        any_raw += min(p) <= ALPHA
        any_holm += min(adjust(p, "holm")) <= ALPHA
    assert any_holm / families <= ALPHA + slack(families)
    assert any_raw / families > 0.3  # uncorrected, the family errs far more often than α


def exact_sign_test_power(n: int, worse: float, better: float) -> float:
    """Analytic power of the two-sided exact sign test when b is worse on `worse` and better on `better` of examples."""
    power = 0.0
    for m in range(n + 1):
        x = np.arange(m + 1)
        p_values = np.minimum(1.0, 2 * binom.cdf(np.minimum(x, m - x), m, 0.5))
        rejects = p_values <= ALPHA
        if m and rejects.any():
            power += binom.pmf(m, n, worse + better) * binom.pmf(x[rejects], m, worse / (worse + better)).sum()
    return power


@pytest.mark.parametrize("n, worse, better", [(60, 0.02, 0.15), (200, 0.05, 0.12), (12, 0.0, 0.6)])
def test_planted_effects_are_found_with_the_analytic_power(n, worse, better):
    rng = np.random.default_rng(n)
    replications, found = 400, 0
    for replication in range(replications):
        u = rng.random(n)
        a = np.ones(n)
        b = np.where(u < worse, 0.0, 1.0)
        a = np.where((u >= worse) & (u < worse + better), 0.0, a)
        found += randomization_test(a, b, mean_of(), n_permutations=SWAPS, seed=replication).p_value <= ALPHA
    analytic = exact_sign_test_power(n, worse, better)
    assert found / replications == pytest.approx(analytic, abs=slack(replications, analytic) + 0.02)


def drop_of_exactly(rng, n: int, margin: float, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """a and b where b's expected drop is exactly `margin`: some examples a got right (or scored ≥ 0.5) lose."""
    if kind == "binary":
        a = (rng.random(n) < 0.7).astype(float)
        return a, np.where((a == 1) & (rng.random(n) < margin / 0.7), 0.0, a)
    a = rng.uniform(0.5, 1.0, n)
    return a, np.where(rng.random(n) < margin / 0.5, a - 0.5, a)


@pytest.mark.parametrize("kind", ["binary", "continuous"])
@pytest.mark.parametrize("n, margin", [(20, 0.1), (100, 0.05), (500, 0.02), (200, 0.1)])
def test_non_inferiority_passes_a_true_drop_of_the_margin_at_most_alpha_of_the_time(kind, n, margin):
    """At a true drop of exactly δ the gate may pass at most α (+ slack) of the time, at any n."""
    rng = np.random.default_rng(int(n * margin * 1000))
    replications, passed = 300, 0
    for replication in range(replications):
        a, b = drop_of_exactly(rng, n, margin, kind)
        pair = paired_test(a, b, mean_of(), n_resamples=500, n_permutations=SWAPS, seed=replication)
        passed += gate_decision(pair, value_a=a.mean(), value_b=b.mean(), higher_is_better=True, tolerance=margin,
                                semantics="non-inferiority").verdict == NON_INFERIOR
    assert passed / replications <= ALPHA + slack(replications)


def test_non_inferiority_passes_a_release_without_a_drop_when_n_allows():
    rng = np.random.default_rng(3)
    passes = 0
    for replication in range(100):
        a = (rng.random(500) < 0.7).astype(float)
        b = np.where(rng.random(500) < 0.01, 1 - a, a)  # 1% of examples flip either way
        pair = paired_test(a, b, mean_of(), n_resamples=500, n_permutations=SWAPS, seed=replication)
        passes += gate_decision(pair, value_a=a.mean(), value_b=b.mean(), higher_is_better=True, tolerance=0.03,
                                semantics="non-inferiority").verdict == NON_INFERIOR
    assert passes >= 80
