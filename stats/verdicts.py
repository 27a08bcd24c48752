"""Verdicts: what a paired difference means for a gate, a ★ or a form's parity.

Two gate semantics, named:
- `drop` — fail on evidence of a drop: a metric regresses when the paired test, at the family's
  corrected level, finds a drop and the drop is larger than the metric's tolerance.
- `non-inferiority` — pass only on evidence that no drop exceeds the margin δ (the tolerance): the
  one-sided 95% upper bound of the drop must be below δ. Every metric must pass, so the family's
  error is controlled without correction (an intersection–union test, Berger 1982).

A comparison that cannot decide at its n is said to be so, never called a pass or a fail: under
`drop` when even the most extreme outcome on its differing examples could not reach α (three of
three flipped 0/1 scores give p = 0.25 at best); under `non-inferiority` when n is too small for
the bootstrap bound to be trusted (see `non_inferiority_decidable`).
"""

from __future__ import annotations

from dataclasses import dataclass

from stats.multiplicity import adjust
from stats.paired import PairedDifference

ALPHA = 0.05
SEMANTICS = ("drop", "non-inferiority")
DEFAULT_SEMANTICS = "drop"

REGRESSION = "REGRESSION"
NOT_NON_INFERIOR = "NOT SHOWN NON-INFERIOR"
FAILING = frozenset({REGRESSION, NOT_NON_INFERIOR})
UNDECIDED = "cannot decide at this n"
IMPROVED = "improved"
NO_CHANGE = "no significant change"
IDENTICAL = "identical on every example"
WITHIN_TOLERANCE = "drop within tolerance"
NON_INFERIOR = "non-inferior"
NEGLIGIBLE = "no change beyond rounding"

# A difference below this share of the metric's size is arithmetic, not behaviour: a merged adapter
# in fp32 moves perplexity by ~1e-8 relative, consistently enough across examples for a paired test
# to call it significant. No suite we run has the n to resolve a 0.01% change.
NEGLIGIBLE_RELATIVE = 1e-4

# Non-inferiority on 0/1 scores has exact bounds (stats.paired). Elsewhere it rests on a bootstrap
# bound, which is overconfident when few examples could show a drop of the margin's size. With n examples of a metric spanning `scale`, a drop of δ moves at
# least n·δ/scale examples' worth of score; below NI_MIN_EXPECTED of them (or below NI_MIN_N
# examples for an unbounded metric) the bound is not trusted. Both were set by the simulation in
# tests/test_stats_calibration.py, which holds the pass rate at a true drop of δ to α.
NI_MIN_EXPECTED = 5.0
NI_MIN_N = 30


@dataclass(frozen=True)
class Decision:
    """A verdict and the sentence behind it (why undecided, which drops are ruled out, …)."""

    verdict: str
    reason: str = ""


def gain(difference: float, higher_is_better: bool) -> float:
    """A difference signed so that positive always means better."""
    return difference if higher_is_better else -difference


def is_negligible(difference: float, value_a: float, value_b: float) -> bool:
    """Whether a difference is below NEGLIGIBLE_RELATIVE of the metric's size (or exactly zero)."""
    return abs(difference) <= NEGLIGIBLE_RELATIVE * max(abs(value_a), abs(value_b))


def is_significant(p_value: float, alpha: float = ALPHA) -> bool:
    """The one rule that turns a (family-corrected) p-value into "significant"."""
    return p_value <= alpha


def drop_bound(pair: PairedDifference, higher_is_better: bool) -> float:
    """The one-sided 95% upper bound of the drop (b worse than a), from the bootstrap."""
    return -pair.bound_low if higher_is_better else pair.bound_high


def non_inferiority_decidable(n: int, margin: float, scale: float | None) -> bool:
    """Whether n examples are enough for a bootstrap bound on drops of `margin` to be trusted."""
    if scale is None:
        return n >= NI_MIN_N
    return n * margin / scale >= NI_MIN_EXPECTED


def gate_decision(pair: PairedDifference, *, value_a: float, value_b: float, higher_is_better: bool,
                  tolerance: float, semantics: str = DEFAULT_SEMANTICS, p_adjusted: float | None = None,
                  scale: float | None = 1.0, alpha: float = ALPHA) -> Decision:
    """The verdict of one metric's change from a (the base) to b (the new), under `semantics`.

    `p_adjusted` is the p-value after the family's correction (the raw one when None); `scale` is
    the metric's range (1 for 0–1 metrics, None for unbounded ones such as perplexity).
    """
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown gate semantics {semantics!r} (expected {' or '.join(SEMANTICS)})")
    if semantics == "non-inferiority":
        return _non_inferiority(pair, higher_is_better, tolerance, scale)
    return _drop(pair, value_a, value_b, higher_is_better, tolerance,
                 pair.p_value if p_adjusted is None else p_adjusted, alpha)


def difference_decision(pair: PairedDifference, *, value_a: float, value_b: float, higher_is_better: bool,
                        p_adjusted: float | None = None, alpha: float = ALPHA) -> Decision:
    """Better, worse, no significant change or undecided: the drop gate with no tolerance, named both ways."""
    decision = _drop(pair, value_a, value_b, higher_is_better, 0.0,
                     pair.p_value if p_adjusted is None else p_adjusted, alpha)
    return Decision("worse", decision.reason) if decision.verdict == REGRESSION else decision


def interval_note(pair: PairedDifference, alpha: float = ALPHA) -> str:
    """Why an interval and the test's verdict seem to disagree; empty when they agree."""
    if pair.interval_agrees(alpha):
        return ""
    if pair.p_value > alpha:
        return (f"the bootstrap interval excludes 0 but the exact test does not reject (p = {pair.p_value:.3g}, "
                f"{pair.n_differing} of {pair.n} examples differ): the interval is overconfident this small")
    return (f"the test rejects (p = {pair.p_value:.3g}) though the bootstrap interval touches 0: the interval is "
            "approximate, the test decides")


def _drop(pair: PairedDifference, value_a: float, value_b: float, higher_is_better: bool, tolerance: float,
          p_value: float, alpha: float) -> Decision:
    if pair.n_differing == 0:
        return Decision(IDENTICAL)
    if is_negligible(pair.difference, value_a, value_b):
        return Decision(NEGLIGIBLE, f"|Δ| ≤ {NEGLIGIBLE_RELATIVE:g} of the metric")
    if not pair.can_reach(alpha):
        return Decision(UNDECIDED, f"only {pair.n_differing} of {pair.n} examples differ: the smallest p they "
                                   f"could give is {pair.min_p_value:.3g} > {alpha:g}")
    if not is_significant(p_value, alpha):
        return Decision(NO_CHANGE, f"p = {p_value:.3g}")
    if gain(pair.difference, higher_is_better) > 0:
        return Decision(IMPROVED, f"p = {p_value:.3g}")
    if -gain(pair.difference, higher_is_better) > tolerance:
        return Decision(REGRESSION, f"p = {p_value:.3g}, drop {abs(pair.difference):.4g} > tolerance {tolerance:g}")
    return Decision(WITHIN_TOLERANCE, f"p = {p_value:.3g}, drop {abs(pair.difference):.4g} ≤ {tolerance:g}")


def _non_inferiority(pair: PairedDifference, higher_is_better: bool, margin: float,
                     scale: float | None) -> Decision:
    if margin <= 0:
        raise ValueError("non-inferiority needs a positive margin (--max-drop METRIC=δ)")
    if not pair.exact_bounds and not non_inferiority_decidable(pair.n, margin, scale):
        return Decision(UNDECIDED, f"n = {pair.n} is too small to bound drops of {margin:g}")
    bound = max(drop_bound(pair, higher_is_better), 0.0)
    if bound < margin:
        return Decision(NON_INFERIOR, f"drops larger than {bound:.3g} ruled out (one-sided 95%)")
    return Decision(NOT_NON_INFERIOR, f"a drop up to {bound:.3g} is not ruled out (margin {margin:g})")


def beats_every_other(pairs: list[PairedDifference], higher_is_better: bool) -> float:
    """The p-value of "b beats every a", from each pair's test of b − a.

    The claim holds only if every pairwise test rejects, so its p-value is the largest of theirs (an
    intersection–union test); it is 1 when some a is as good as b or better.
    """
    if not pairs or any(gain(pair.difference, higher_is_better) <= 0 for pair in pairs):
        return 1.0
    return max(pair.p_value for pair in pairs)


def significant_in_family(p_values: list[float], correction: str, alpha: float = ALPHA) -> list[bool]:
    """Which of a family's tests are significant after the family's correction."""
    return [is_significant(p, alpha) for p in adjust(p_values, correction)]
