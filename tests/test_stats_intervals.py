"""Bootstrap intervals (the paired test is tests/test_stats_paired.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stats.intervals import bootstrap_ci
from stats.statistic import SumStatistic, mean_of

ratio = SumStatistic(lambda sums, n: np.exp(-sums[..., 0] / sums[..., 1]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=5, max_size=40))
def test_interval_contains_the_point_estimate_of_a_mean(values):
    metric = bootstrap_ci(np.array(values), mean_of(), n_resamples=1000, seed=3)
    assert metric.ci_low - 1e-12 <= metric.value <= metric.ci_high + 1e-12
    assert metric.value == pytest.approx(np.mean(values))
    assert metric.n == len(values)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-200, -1), st.integers(1, 60)), min_size=5, max_size=30))
def test_interval_contains_the_point_estimate_of_a_corpus_perplexity(documents):
    rows = np.array(documents, dtype=float)
    metric = bootstrap_ci(rows, ratio, n_resamples=1000)
    assert metric.ci_low <= metric.value <= metric.ci_high


def test_interval_narrows_as_the_sample_grows():
    rng = np.random.default_rng(7)
    widths = []
    for n in (20, 200, 2000):
        metric = bootstrap_ci(rng.integers(0, 2, size=n).astype(float), mean_of(), n_resamples=1000)
        widths.append(metric.ci_high - metric.ci_low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < widths[0] / 5  # shrinks like 1/sqrt(n)


def test_same_seed_same_interval_and_lists_work_like_arrays():
    values = [0.1, 0.9, 0.35, 0.0, 0.7, 1.0, 0.55]
    from_list = bootstrap_ci(values, mean_of(), seed=11)
    from_array = bootstrap_ci(np.array(values), mean_of(), seed=11)
    assert from_list == from_array
    assert bootstrap_ci(values, mean_of(), seed=12) != from_list


def test_resampling_by_counts_equals_indexing_the_rows():
    """The vectorised bootstrap draws the same resamples as indexing would (same seed, same indices)."""
    rows = np.random.default_rng(2).random((30, 2))
    metric = bootstrap_ci(rows, ratio, n_resamples=200, seed=5)
    indices = np.random.default_rng(5).integers(0, 30, size=(200, 30))
    replicates = [ratio(rows[i]) for i in indices]
    assert (metric.ci_low, metric.ci_high) == pytest.approx(tuple(np.quantile(replicates, [0.025, 0.975])))


def test_single_example_has_a_degenerate_interval():
    metric = bootstrap_ci(np.array([0.25]), mean_of())
    assert (metric.value, metric.ci_low, metric.ci_high, metric.n) == (0.25, 0.25, 0.25, 1)


def test_empty_sample_is_refused():
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([]), mean_of())


def test_detectable_difference_is_2_8_unpaired_standard_errors():
    from stats.power import detectable_difference

    # A 95% interval of half-width 1.96 is one standard error; two configurations: √2 of them.
    assert detectable_difference(-1.959964, 1.959964) == pytest.approx((1.959964 + 0.841621) * 2 ** 0.5)
    values = np.random.default_rng(0).normal(0.5, 0.2, size=400)
    low, high = np.percentile([values[np.random.default_rng(i).integers(0, 400, 400)].mean() for i in range(500)],
                              [2.5, 97.5])
    assert detectable_difference(low, high) == pytest.approx(2.8 * 2 ** 0.5 * 0.2 / 20, rel=0.15)
