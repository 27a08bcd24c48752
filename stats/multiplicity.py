"""Error control across a family of tests: Holm (family-wise, the default), Benjamini–Hochberg, none."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CORRECTIONS = ("holm", "bh", "none")
DEFAULT_CORRECTION = "holm"


def adjust(p_values: Sequence[float], correction: str = DEFAULT_CORRECTION) -> list[float]:
    """Adjusted p-values, in the input order: compare each with α to decide at the family's level.

    holm: Holm's step-down, which controls the family-wise error rate under any dependence.
    bh: Benjamini–Hochberg step-up, which controls the false discovery rate (independent or
    positively dependent tests). none: the p-values as they are.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r} (expected one of {', '.join(CORRECTIONS)})")
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0 or correction == "none":
        return [float(x) for x in p]
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if correction == "holm":
        stepped = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:
        stepped = np.minimum.accumulate((m / np.arange(m, 0, -1) * ranked[::-1]))[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(x) for x in adjusted]
