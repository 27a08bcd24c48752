"""A metric change between two result files of one task: paired, tested, and judged against a tolerance.

`compare` gates one run against another with these; the report's parity sections judge each
deployable form against its parent with the same test, so the two verdicts never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.schema import ResultFile
from reports.significance import (
    improvement,
    is_significant,
    paired_differences,
    shared_records,
)
from tasks.stats import PairedDifference

REGRESSION = "REGRESSION"
NOT_TESTED = "not tested (no per-example scores to pair)"
# A difference below this share of the metric's size is arithmetic, not behaviour: a merged adapter
# in fp32 moves perplexity by ~1e-8 relative, consistently enough across examples for the paired
# bootstrap to call it significant. No suite we run has the n to resolve a 0.01% change.
NEGLIGIBLE_RELATIVE = 1e-4


@dataclass
class MetricChange:
    configuration: str
    task: str
    metric: str
    base: float
    new: float
    difference: PairedDifference | None  # None: the metric could not be paired
    tolerance: float

    @property
    def verdict(self) -> str:
        if self.difference is None:
            return NOT_TESTED
        if not is_significant(self.difference) or self.negligible:
            return "no significant change"
        gain = improvement(self.metric, self.difference.difference)
        if gain > 0:
            return "improved"
        return REGRESSION if -gain > self.tolerance else "drop within tolerance"

    @property
    def negligible(self) -> bool:
        """Whether the difference is below NEGLIGIBLE_RELATIVE of the metric's size (or exactly zero)."""
        scale = max(abs(self.base), abs(self.new))
        return abs(self.difference.difference) <= NEGLIGIBLE_RELATIVE * scale


def metric_changes(base: ResultFile, new: ResultFile, max_drop: dict[str, float], notes: list[str], n_resamples: int,
             seed: int) -> list[MetricChange]:
    """Every metric both results report, paired on their shared examples; notes collect what could not be."""
    label = f"{base.configuration}/{base.task}"
    records_base, _ = shared_records(base, new)
    if not records_base:
        return []
    if len(records_base) < max(len(base.examples), len(new.examples)):
        notes.append(f"{label}: compared on the {len(records_base)} examples both runs "
                     f"scored ({len(base.examples)} in base, {len(new.examples)} in new)")
    notes += _one_sided_metric_notes(label, base, new)
    metrics = [metric for metric in base.metrics if metric in new.metrics]
    compared = paired_differences(base, new, metrics, n_resamples=n_resamples, seed=seed)
    unpaired = [metric for metric in metrics if metric not in compared]
    if unpaired:
        notes.append(f"{label}: {', '.join(unpaired)} could not be paired example by example: "
                     "listed with the plain difference, not gated")
    return [_change(base, new, metric, compared.get(metric), max_drop.get(metric, 0.0)) for metric in metrics]


def _change(base: ResultFile, new: ResultFile, metric: str, pair, tolerance: float) -> MetricChange:
    if pair is None:
        return MetricChange(base.configuration, base.task, metric, base.metrics[metric]["value"],
                            new.metrics[metric]["value"], None, tolerance)
    return MetricChange(base.configuration, base.task, metric, pair.value_a, pair.value_b, pair.difference, tolerance)


def _one_sided_metric_notes(label: str, base: ResultFile, new: ResultFile) -> list[str]:
    notes = []
    for side, mine, other in (("base", base, new), ("new", new, base)):
        only = [metric for metric in mine.metrics if metric not in other.metrics]
        if only:
            notes.append(f"{label}: {', '.join(only)} only in the {side} run (not compared)")
    return notes
