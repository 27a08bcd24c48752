"""What a comparison at a given n could detect, and how many examples a canary needs.

The figures are the usual normal-approximation ones (two-sided 5% test, 80% power) and need no
pairs: two configurations differ with √2 times one configuration's standard error. A paired test
does better when configurations agree example by example, so they are upper bounds.
"""

from __future__ import annotations

import math

# z for a two-sided 5% test and for 80% power: the usual minimum-detectable-effect quantiles.
Z_ALPHA, Z_POWER = 1.959964, 0.841621


def standard_error(ci_low: float, ci_high: float) -> float:
    """One configuration's standard error, from its 95% interval (half-width / 1.96)."""
    return (ci_high - ci_low) / 2 / Z_ALPHA


def detectable_difference(ci_low: float, ci_high: float) -> float:
    """The difference between two configurations a test at this n detects with 80% power.

    From one configuration's 95% interval: its half-width / 1.96 is the standard error of the metric;
    two configurations differ with √2 times that; a two-sided 5% test with 80% power needs
    (1.96 + 0.84) standard errors. Smaller differences are detected less than 80% of the time.
    """
    return (Z_ALPHA + Z_POWER) * math.sqrt(2) * standard_error(ci_low, ci_high)


def detectable_at(spread: float, n: int) -> float:
    """The difference detected with 80% power at n examples, given the per-example spread (SD)."""
    return (Z_ALPHA + Z_POWER) * math.sqrt(2) * spread / math.sqrt(max(n, 1))


def examples_needed(spread: float, difference: float) -> int:
    """The n at which a difference of `difference` is detected with 80% power (per-example SD `spread`)."""
    if difference <= 0:
        raise ValueError(f"the difference to detect must be positive, got {difference}")
    return max(1, math.ceil(((Z_ALPHA + Z_POWER) * math.sqrt(2) * spread / difference) ** 2))


def spread_from_interval(ci_low: float, ci_high: float, n: int) -> float:
    """The per-example standard deviation implied by a 95% interval at n examples."""
    return standard_error(ci_low, ci_high) * math.sqrt(n)


def undetected_sentence(metric: str, difference: float) -> str:
    """The honest wording of a detectable difference."""
    return (f"a difference in {metric} smaller than about {difference:.3g} would be detected less than "
            "80% of the time (two-sided 5% test, bound without pairing)")
