"""Two independent shares of 0/1 outcomes — users' thumbs in one window and in another: is the second lower?

Fisher's exact test conditions on both margins, so its p-value is valid at any n (a z-test of two
proportions is not, with the dozens of ratings a quiet window gets); it is conservative there, so
a drop it finds is a real one. The windows' intervals are stats.intervals.clopper_pearson's.
"""

from __future__ import annotations

from scipy.stats import fisher_exact


def share_drop_p_value(successes_before: int, n_before: int, successes_after: int, n_after: int) -> float:
    """One-sided p-value of "the share after is lower than the share before" (Fisher's exact test).

    1.0 when either side has no outcomes (nothing to compare).
    """
    if n_before == 0 or n_after == 0:
        return 1.0
    table = [[successes_before, n_before - successes_before], [successes_after, n_after - successes_after]]
    # alternative="greater": the before row's odds of success exceed the after row's, i.e. a drop.
    return float(fisher_exact(table, alternative="greater").pvalue)
