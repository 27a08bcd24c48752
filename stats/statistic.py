"""A metric as a function of the column sums of its per-example rows.

Means (accuracy, F1 per example, ROUGE), corpus ratios (perplexity, bits per byte), micro and macro
F1 from tp/fp/fn counts and corpus BLEU from its n-gram counts are all functions of column sums.
Writing them that way lets a resample or a swap of examples be a matrix product: `of_sums` takes
sums of shape (..., k) and the number of examples, and returns values of shape (...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SumsFunction = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class SumStatistic:
    """A metric computed from column sums; calling it on rows gives the metric of those rows."""

    of_sums: SumsFunction
    mean_column: int | None = None  # set when the metric is the mean of this column (exact bounds for 0/1)

    def __call__(self, rows: Sequence | np.ndarray) -> float:
        matrix = as_rows(rows)
        return float(self.of_sums(matrix.sum(axis=0), len(matrix)))


Statistic = SumStatistic


def mean_of(column: int = 0) -> SumStatistic:
    """The mean of one column of the rows (a 1-D sample is one column)."""
    return SumStatistic(lambda sums, n: sums[..., column] / n, mean_column=column)


def as_rows(rows: Sequence | np.ndarray) -> np.ndarray:
    """Per-example rows as a float matrix (n, k): a 1-D sample becomes one column, 3-D rows are flattened."""
    matrix = np.asarray(rows, dtype=float)
    if matrix.ndim == 1:
        return matrix[:, None]
    return matrix.reshape(len(matrix), -1)


def safe_divide(numerator, denominator):
    """numerator / denominator elementwise, 0 where the denominator is 0 (precision with no predictions)."""
    numerator, denominator = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    return np.divide(numerator, denominator, out=np.zeros(np.broadcast(numerator, denominator).shape),
                     where=denominator != 0)


def safe_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0 when the denominator is 0."""
    return float(numerator / denominator) if denominator else 0.0
