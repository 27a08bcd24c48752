"""A metric change between two result files of one task: paired, tested, and judged as one family.

`compare` gates one run against another with these; the report's parity sections judge each
deployable form against its parent with the same test, and `monitor` each canary round, so the
verdicts never disagree. The statistics (the test, the correction, the verdict) are `stats`'s; this
module gathers the changes and hands them over as one family.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reports.schema import ResultFile
from stats.multiplicity import DEFAULT_CORRECTION, adjust
from stats.paired import PairedDifference
from stats.verdicts import (
    ALPHA,
    DEFAULT_SEMANTICS,
    FAILING,
    REGRESSION,
    Decision,
    gate_decision,
)
from tasks.pairing import higher_is_better, metric_scale, paired_differences, shared_records

NOT_TESTED = "not tested (no per-example scores to pair)"

__all__ = ["NOT_TESTED", "REGRESSION", "GateSettings", "MetricChange", "metric_changes", "decide_family"]


@dataclass(frozen=True)
class GateSettings:
    """How a family of changes is judged: the semantics, the correction, α."""

    semantics: str = DEFAULT_SEMANTICS
    correction: str = DEFAULT_CORRECTION
    alpha: float = ALPHA

    def sentence(self, family_size: int) -> str:
        if self.semantics == "non-inferiority":
            return (f"Semantics: non-inferiority — a metric passes only when the one-sided 95% upper bound of its drop "
                    f"is below its margin (--max-drop); all {family_size} must pass, so no correction is needed "
                    "(intersection–union test).")
        correction = {"holm": "Holm (family-wise error)", "bh": "Benjamini–Hochberg (false discovery rate)",
                      "none": "none"}[self.correction]
        return (f"Semantics: fail on evidence of a drop — a regression is a significant drop (paired randomization "
                f"test, exact up to 16 differing examples) larger than the metric's tolerance. Family: "
                f"{family_size} tests at α = {self.alpha:g}, correction: {correction}.")


@dataclass
class MetricChange:
    configuration: str
    task: str
    metric: str
    base: float
    new: float
    difference: PairedDifference | None  # None: the metric could not be paired
    tolerance: float
    p_adjusted: float | None = None      # after the family's correction
    decision: Decision | None = field(default=None)
    withheld: str = ""                   # why the change is listed but not gated (an incomplete result)

    @property
    def verdict(self) -> str:
        if self.withheld:
            return f"not gated ({self.withheld})"
        if self.difference is None:
            return NOT_TESTED
        return self.decision.verdict if self.decision else "not judged"

    @property
    def fails(self) -> bool:
        return self.verdict in FAILING


def decide_family(changes: list[MetricChange], settings: GateSettings) -> list[MetricChange]:
    """Judge every tested change as one family: correct the p-values together, then decide each."""
    tested = [change for change in changes if change.difference is not None and not change.withheld]
    adjusted = adjust([change.difference.p_value for change in tested], settings.correction)
    for change, p_adjusted in zip(tested, adjusted):
        change.p_adjusted = p_adjusted
        change.decision = gate_decision(change.difference, value_a=change.base, value_b=change.new,
                                        higher_is_better=higher_is_better(change.metric), tolerance=change.tolerance,
                                        semantics=settings.semantics, p_adjusted=p_adjusted,
                                        scale=metric_scale(change.metric), alpha=settings.alpha)
    return changes


def family_size(changes: list[MetricChange]) -> int:
    return sum(change.difference is not None and not change.withheld for change in changes)


def incompleteness(result: ResultFile) -> str:
    """Why a result is incomplete ("3 of 40 examples failed"), empty when every example was scored."""
    incomplete = result.settings.get("incomplete")
    if not isinstance(incomplete, dict):
        return ""
    return f"{len(incomplete.get('failed_examples', []))} of {incomplete.get('examples')} examples failed"


def metric_changes(base: ResultFile, new: ResultFile, max_drop: dict[str, float], notes: list[str], n_resamples: int,
                   seed: int, *, metrics: list[str] | None = None,
                   allow_incomplete: bool = False) -> list[MetricChange]:
    """Every metric both results report (or the named ones), paired on their shared examples.

    The changes are not judged yet: `decide_family` judges them with the rest of their family.
    A result with examples whose requests failed is incomplete: its changes are listed but not
    gated unless `allow_incomplete` (then the failed examples simply are not shared). Notes collect
    what could not be paired.
    """
    withheld = "; ".join(f"{side} incomplete: {why}" for side, result in (("base", base), ("new", new))
                         if (why := incompleteness(result)))
    changes = _paired_changes(base, new, max_drop, notes, n_resamples, seed, metrics)
    if withheld and not allow_incomplete:
        notes.append(f"{base.configuration}/{base.task}: {withheld}: not gated (--allow-incomplete gates it on the "
                     "examples both runs scored)")
        for change in changes:
            change.withheld = withheld
    return changes


def _paired_changes(base: ResultFile, new: ResultFile, max_drop: dict[str, float], notes: list[str],
                    n_resamples: int, seed: int, metrics: list[str] | None) -> list[MetricChange]:
    label = f"{base.configuration}/{base.task}"
    records_base, _ = shared_records(base, new)
    if not records_base:
        return []
    if len(records_base) < max(len(base.examples), len(new.examples)):
        notes.append(f"{label}: compared on the {len(records_base)} examples both runs "
                     f"scored ({len(base.examples)} in base, {len(new.examples)} in new)")
    notes += _one_sided_metric_notes(label, base, new)
    shared = [metric for metric in base.metrics if metric in new.metrics]
    if metrics is not None:
        shared = [metric for metric in shared if metric in metrics]
    compared = paired_differences(base, new, shared, n_resamples=n_resamples, seed=seed)
    unpaired = [metric for metric in shared if metric not in compared]
    if unpaired:
        notes.append(f"{label}: {', '.join(unpaired)} could not be paired example by example: "
                     "listed with the plain difference, not gated")
    return [_change(base, new, metric, compared.get(metric), max_drop.get(metric, 0.0)) for metric in shared]


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
