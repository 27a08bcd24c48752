"""A run's table for one task: every configuration's value and interval of each metric, ★ marked.

Built by reports/summary.py from the result files, marked by reports/stars.py, drawn by the
renderers and plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stats.power import detectable_difference, undetected_sentence
from tasks.pairing import headline_metric


@dataclass
class MetricCell:
    value: float
    ci_low: float
    ci_high: float
    n: int
    best: bool = False  # significantly better than every other configuration (paired test, Holm over the ★ family)


@dataclass
class TaskTable:
    task: str
    task_type: str
    metrics: list[str]
    cells: dict[str, dict[str, MetricCell]]  # configuration -> metric -> cell
    n_examples: dict[str, int]               # configuration -> examples scored

    @property
    def configurations(self) -> list[str]:
        return list(self.cells)

    @property
    def headline(self) -> str:
        return headline_metric(self.task_type, self.metrics)

    @property
    def detectable_difference(self) -> float | None:
        """The headline metric's smallest difference this n could detect (median over configurations)."""
        cells = [cells[self.headline] for cells in self.cells.values() if self.headline in cells]
        widths = sorted(detectable_difference(cell.ci_low, cell.ci_high) for cell in cells
                        if math.isfinite(cell.ci_low) and math.isfinite(cell.ci_high))
        return widths[len(widths) // 2] if widths else None

    def resolution_sentence(self) -> str:
        n = max(self.n_examples.values(), default=0)
        difference = self.detectable_difference
        if difference is None:
            return f"n = {n}."
        return f"n = {n}: {undetected_sentence(self.headline, difference)}."
