"""Bootstrap intervals and the paired bootstrap."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.stats import bootstrap_ci, mean_statistic, paired_bootstrap


def ratio(rows):
    rows = np.asarray(rows, dtype=float)
    return math.exp(-rows[:, 0].sum() / rows[:, 1].sum())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=5, max_size=40))
def test_interval_contains_the_point_estimate_of_a_mean(values):
    metric = bootstrap_ci(np.array(values), mean_statistic(), n_resamples=1000, seed=3)
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
        metric = bootstrap_ci(rng.integers(0, 2, size=n).astype(float), mean_statistic(), n_resamples=1000)
        widths.append(metric.ci_high - metric.ci_low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < widths[0] / 5  # shrinks like 1/sqrt(n)


def test_same_seed_same_interval_and_lists_work_like_arrays():
    values = [0.1, 0.9, 0.35, 0.0, 0.7, 1.0, 0.55]
    from_list = bootstrap_ci(values, lambda rows: float(np.mean(rows)), seed=11)
    from_array = bootstrap_ci(np.array(values), mean_statistic(), seed=11)
    assert from_list == from_array
    assert bootstrap_ci(values, lambda rows: float(np.mean(rows)), seed=12) != from_list


def test_single_example_has_a_degenerate_interval():
    metric = bootstrap_ci(np.array([0.25]), mean_statistic())
    assert (metric.value, metric.ci_low, metric.ci_high, metric.n) == (0.25, 0.25, 0.25, 1)


def test_empty_sample_is_refused():
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([]), mean_statistic())


def test_paired_bootstrap_of_identical_systems_is_no_difference():
    scores = np.random.default_rng(0).random(50)
    result = paired_bootstrap(scores, scores.copy(), mean_statistic(), n_resamples=1000, seed=0)
    assert result.difference == 0 and result.p_value == 1.0
    assert result.ci_low == result.ci_high == 0


def test_paired_bootstrap_detects_a_consistent_improvement():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, size=200).astype(float)
    b = np.maximum(a, rng.integers(0, 2, size=200) * (rng.random(200) < 0.3))  # b fixes ~15% of a's errors
    result = paired_bootstrap(a, b, mean_statistic(), n_resamples=2000, seed=0)
    assert result.difference == pytest.approx(b.mean() - a.mean())
    assert result.ci_low > 0
    assert result.p_value < 0.01


def test_paired_bootstrap_of_noise_is_not_significant():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 2, size=100).astype(float)
    b = rng.permutation(a)  # same accuracy, different examples right
    result = paired_bootstrap(a, b, mean_statistic(), n_resamples=1000, seed=0)
    assert result.ci_low <= 0 <= result.ci_high
    assert result.p_value > 0.05


def test_paired_bootstrap_needs_the_same_examples():
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap(np.zeros(3), np.zeros(4), mean_statistic(), n_resamples=10, seed=0)


def test_detectable_difference_is_2_8_unpaired_standard_errors():
    from tasks.stats import detectable_difference

    # A 95% interval of half-width 1.96 is one standard error; two configurations: √2 of them.
    assert detectable_difference(-1.959964, 1.959964) == pytest.approx((1.959964 + 0.841621) * 2 ** 0.5)
    values = np.random.default_rng(0).normal(0.5, 0.2, size=400)
    low, high = np.percentile([values[np.random.default_rng(i).integers(0, 400, 400)].mean() for i in range(500)],
                              [2.5, 97.5])
    assert detectable_difference(low, high) == pytest.approx(2.8 * 2 ** 0.5 * 0.2 / 20, rel=0.15)
