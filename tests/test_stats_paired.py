"""The paired randomization test: exact where few examples differ, right for corpus metrics, one family."""

import itertools

import numpy as np
import pytest
from scipy.stats import binomtest, false_discovery_control

from stats.multiplicity import adjust
from stats.paired import paired_test, randomization_test
from stats.statistic import SumStatistic, mean_of
from stats.verdicts import (
    IDENTICAL,
    NON_INFERIOR,
    NOT_NON_INFERIOR,
    REGRESSION,
    UNDECIDED,
    gate_decision,
    interval_note,
)

PERPLEXITY = SumStatistic(lambda sums, n: np.exp(-sums[..., 0] / sums[..., 1]))


def flipped(n: int, changed: int) -> tuple[np.ndarray, np.ndarray]:
    """n examples right in a, `changed` of them wrong in b (all the same way)."""
    a = np.ones(n)
    b = a.copy()
    b[:changed] = 0
    return a, b


@pytest.mark.parametrize("n, changed", [(1, 1), (3, 3), (5, 5), (16, 4)])
def test_p_value_equals_the_exact_sign_test_where_few_examples_differ(n, changed):
    a, b = flipped(n, changed)
    pair = paired_test(a, b, mean_of())
    assert pair.p_value == pytest.approx(binomtest(changed, changed).pvalue)
    assert pair.exact and pair.n_differing == changed


def test_three_of_three_flipped_cannot_decide_rather_than_regress():
    a, b = flipped(3, 3)
    decision = gate_decision(paired_test(a, b, mean_of()), value_a=1.0, value_b=0.0, higher_is_better=True,
                             tolerance=0.0)
    assert decision.verdict == UNDECIDED and "0.25" in decision.reason


def test_an_interval_excluding_zero_beside_not_significant_says_why():
    a, b = flipped(48, 4)
    pair = paired_test(a, b, mean_of())
    assert pair.ci_high < 0 and pair.p_value == pytest.approx(0.125)
    assert not pair.interval_agrees(0.05)
    assert "overconfident" in interval_note(pair)
    a, b = flipped(48, 12)
    agreeing = paired_test(a, b, mean_of())
    assert agreeing.p_value < 0.05 and agreeing.interval_agrees(0.05) and interval_note(agreeing) == ""


def test_exact_enumeration_equals_brute_force_swaps_of_a_corpus_perplexity():
    rng = np.random.default_rng(4)
    tokens = rng.integers(5, 80, size=9).astype(float)
    a = np.column_stack([-rng.uniform(1, 3, 9) * tokens, tokens])
    b = a.copy()
    b[:7, 0] -= rng.uniform(0, 20, 7)  # two examples unchanged
    observed = abs(PERPLEXITY(b) - PERPLEXITY(a))
    extreme = 0
    for swap in itertools.product([False, True], repeat=len(a)):
        mask = np.array(swap)[:, None]
        swapped_a, swapped_b = np.where(mask, b, a), np.where(mask, a, b)
        extreme += abs(PERPLEXITY(swapped_b) - PERPLEXITY(swapped_a)) >= observed * (1 - 1e-9)
    test = randomization_test(a, b, PERPLEXITY)
    assert test.exact and test.n_differing == 7
    assert test.p_value == pytest.approx(extreme / 2 ** len(a))


def test_monte_carlo_beyond_the_exact_limit_keeps_p_above_zero_and_near_the_exact_value():
    a, b = flipped(200, 30)
    b[30:40] = 0
    a[30:40] = 0  # ten more examples both wrong: they do not differ
    test = randomization_test(a, b, mean_of(), n_permutations=9999, seed=1)
    assert not test.exact and test.n_differing == 30
    assert test.p_value == pytest.approx(1 / 10000)  # the +1 correction: never 0
    a, b = np.ones(200), np.ones(200)
    b[:13] = 0
    a[100:117] = 0  # 13 wrong one way against 17 the other: 30 differ, p near the sign test's
    exact = binomtest(13, 30).pvalue
    assert randomization_test(a, b, mean_of(), seed=2).p_value == pytest.approx(exact, abs=0.02)


def test_identical_configurations_are_identical_not_significant():
    a = np.random.default_rng(0).random(50)
    pair = paired_test(a, a.copy(), mean_of())
    assert pair.p_value == 1.0 and pair.n_differing == 0 and pair.ci_low == pair.ci_high == 0
    assert gate_decision(pair, value_a=a.mean(), value_b=a.mean(), higher_is_better=True,
                         tolerance=0).verdict == IDENTICAL


def test_a_real_drop_at_a_decidable_n_is_a_regression_beyond_tolerance_only():
    a, b = flipped(200, 30)
    pair = paired_test(a, b, mean_of())
    strict = gate_decision(pair, value_a=1.0, value_b=0.85, higher_is_better=True, tolerance=0.01)
    lenient = gate_decision(pair, value_a=1.0, value_b=0.85, higher_is_better=True, tolerance=0.2)
    assert strict.verdict == REGRESSION and lenient.verdict != REGRESSION


def test_a_large_drop_that_is_not_significant_fails_non_inferiority():
    """The issue's case: a big F1 drop at n = 48 passes `drop` but must not pass non-inferiority."""
    rng = np.random.default_rng(5)
    a = rng.random(48)
    b = np.clip(a - 0.1 + rng.normal(0, 0.5, 48), 0, 1)
    pair = paired_test(a, b, mean_of())
    decision = gate_decision(pair, value_a=a.mean(), value_b=b.mean(), higher_is_better=True, tolerance=0.01,
                             semantics="non-inferiority", scale=None)
    assert decision.verdict == NOT_NON_INFERIOR and "not ruled out" in decision.reason


def test_non_inferiority_passes_with_the_largest_drop_ruled_out():
    rng = np.random.default_rng(6)
    a = rng.random(500)
    b = np.clip(a + rng.normal(0, 0.02, 500), 0, 1)
    pair = paired_test(a, b, mean_of())
    decision = gate_decision(pair, value_a=a.mean(), value_b=b.mean(), higher_is_better=True, tolerance=0.02,
                             semantics="non-inferiority")
    assert decision.verdict == NON_INFERIOR
    bound = float(decision.reason.split("larger than ")[1].split(" ")[0])
    assert 0 <= bound < 0.02


def test_non_inferiority_at_a_small_n_is_never_a_pass():
    """20 identical examples cannot rule out a 5-point drop: exact 0/1 bounds say so; other metrics cannot decide."""
    ones = np.ones(20)
    binary = gate_decision(paired_test(ones, ones.copy(), mean_of()), value_a=1, value_b=1, higher_is_better=True,
                           tolerance=0.05, semantics="non-inferiority")
    assert binary.verdict == NOT_NON_INFERIOR and "0.168" in binary.reason  # 1 − 0.025^(1/20)
    scores = np.random.default_rng(1).random(20)
    continuous = gate_decision(paired_test(scores, scores.copy(), mean_of()), value_a=0.5, value_b=0.5,
                               higher_is_better=True, tolerance=0.05, semantics="non-inferiority")
    assert continuous.verdict == UNDECIDED


def test_holm_and_benjamini_hochberg_match_their_definitions():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    holm = adjust(p, "holm")
    ranked = sorted(range(5), key=p.__getitem__)
    expected, running = [0.0] * 5, 0.0
    for rank, index in enumerate(ranked):
        running = max(running, min(1.0, (5 - rank) * p[index]))
        expected[index] = running
    assert holm == pytest.approx(expected)
    assert adjust(p, "bh") == pytest.approx(false_discovery_control(p, method="bh"))
    assert adjust(p, "none") == p
    with pytest.raises(ValueError):
        adjust(p, "bonferroni-ish")



def test_the_cli_offers_exactly_the_semantics_and_corrections_stats_knows():
    """cli.options repeats the names so `--help` imports no numpy; they must not drift."""
    from cli import options
    from stats.multiplicity import CORRECTIONS
    from stats.verdicts import SEMANTICS

    assert options.SEMANTICS == SEMANTICS and options.CORRECTIONS == CORRECTIONS
