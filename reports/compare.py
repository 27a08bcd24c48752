"""The regression gate: two runs of one suite, compared configuration by configuration, task by task.

Every metric both result files report is compared: the task's own, per-type F1, retrieval metrics
(reports/significance.py says how each is rebuilt per example). Each difference is tested with a
paired bootstrap on the examples both runs scored (matched by example id). A metric *regresses*
when it got significantly worse (p < 0.05) and by more than its tolerance (`--max-drop
metric=0.01`, default 0). A metric that cannot be rebuilt per example is still listed, with its
plain difference and the verdict that it was not tested; one that only one run reports is noted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DomainbenchError
from reports.formatting import format_interval, format_value
from reports.render_markdown import markdown_text, table
from reports.schema import ResultFile
from reports.significance import (
    improvement,
    is_significant,
    paired_differences,
    shared_records,
)
from reports.summary import load_run_results, run_name
from tasks.stats import PairedDifference

REGRESSION = "REGRESSION"
NOT_TESTED = "not tested (no per-example scores to pair)"


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
        if not is_significant(self.difference) or self.difference.difference == 0:
            return "no significant change"
        gain = improvement(self.metric, self.difference.difference)
        if gain > 0:
            return "improved"
        return REGRESSION if -gain > self.tolerance else "drop within tolerance"


@dataclass
class Comparison:
    base_run: str
    new_run: str
    suite: str
    changes: list[MetricChange]
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricChange]:
        return [change for change in self.changes if change.verdict == REGRESSION]


def parse_max_drop(values: tuple[str, ...] | list[str]) -> dict[str, float]:
    """`metric=0.01` pairs into {metric: tolerance}."""
    tolerances = {}
    for value in values:
        metric, separator, number = value.partition("=")
        try:
            tolerance = float(number)
        except ValueError:
            tolerance = -1.0
        if not separator or not metric.strip() or tolerance < 0:
            raise DomainbenchError(f"--max-drop {value!r}: expected METRIC=NON_NEGATIVE_NUMBER, e.g. f1=0.01")
        tolerances[metric.strip()] = tolerance
    return tolerances


def compare_runs(base_dir: Path, new_dir: Path, max_drop: dict[str, float] | None = None, *,
                 n_resamples: int = 1000, seed: int = 0) -> Comparison:
    """Every shared (configuration, task, metric) of two runs, tested for a significant change."""
    max_drop = max_drop or {}
    base_results, new_results = load_run_results(base_dir), load_run_results(new_dir)
    suite = _same_suite(base_dir, base_results, new_dir, new_results)
    base = {(r.configuration, r.task): r for r in base_results}
    new = {(r.configuration, r.task): r for r in new_results}
    shared = [key for key in base if key in new]
    if not shared:
        raise DomainbenchError(f"{base_dir} and {new_dir} share no (configuration, task) result to compare")
    _check_tolerances(max_drop, [(base[key], new[key]) for key in shared])
    comparison = Comparison(run_name(base_dir, base_results), run_name(new_dir, new_results), suite, [])
    comparison.notes += _unmatched_notes(base, new)
    for key in shared:
        comparison.changes += _changes(base[key], new[key], max_drop, comparison.notes, n_resamples, seed)
    if not comparison.changes:
        raise DomainbenchError(f"{base_dir} and {new_dir} share no scored example (example ids differ)")
    return comparison


def _same_suite(base_dir: Path, base: list[ResultFile], new_dir: Path, new: list[ResultFile]) -> str:
    base_suites = {r.suite.get("name") for r in base}
    new_suites = {r.suite.get("name") for r in new}
    if base_suites != new_suites or len(base_suites) != 1:
        raise DomainbenchError(f"cannot compare runs on different suites: {base_dir} ran "
                               f"{', '.join(sorted(map(str, base_suites)))}, {new_dir} ran "
                               f"{', '.join(sorted(map(str, new_suites)))}")
    return str(base_suites.pop())


def _check_tolerances(max_drop: dict[str, float], pairs: list[tuple[ResultFile, ResultFile]]) -> None:
    """A tolerance must name a metric both runs report for some compared task (retrieval, per-type included)."""
    reported = {metric for base, new in pairs for metric in base.metrics if metric in new.metrics}
    unknown = sorted(set(max_drop) - reported)
    if unknown:
        raise DomainbenchError(f"--max-drop {unknown[0]}: no compared task reports this metric in both runs "
                               f"(metrics: {', '.join(sorted(reported))})")


def _unmatched_notes(base: dict, new: dict) -> list[str]:
    notes = []
    for label, keys in (("only in the base run", base.keys() - new.keys()), ("only in the new run", new.keys() - base.keys())):
        if keys:
            notes.append(f"{label} (not compared): " + ", ".join(f"{c}/{t}" for c, t in sorted(keys)))
    return notes


def _changes(base: ResultFile, new: ResultFile, max_drop: dict[str, float], notes: list[str], n_resamples: int,
             seed: int) -> list[MetricChange]:
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


def render_comparison(comparison: Comparison) -> str:
    """A Markdown table fit for a CI comment, with the verdict first."""
    regressions = comparison.regressions
    headline = (f"**{len(regressions)} significant regression{'s' if len(regressions) != 1 else ''} beyond tolerance**"
                if regressions else "**No significant regression beyond tolerance**")
    rows = [[markdown_text(c.configuration), markdown_text(c.task), markdown_text(c.metric), format_value(c.base),
             format_value(c.new), *_difference_cells(c), f"**{c.verdict}**" if c.verdict == REGRESSION else c.verdict]
            for c in comparison.changes]
    lines = [f"### domainbench compare: {markdown_text(comparison.base_run)} → {markdown_text(comparison.new_run)}",
             "", headline, "",
             f"Suite {markdown_text(comparison.suite)}. Δ = new − base with its 95% interval, paired bootstrap on the "
             "examples both runs scored; a regression is a significant (p < 0.05) drop larger than the metric's "
             "tolerance.", "",
             table(["configuration", "task", "metric", "base", "new", "Δ [95% CI]", "p", "n", "verdict"], rows)]
    lines += [""] + [f"- {markdown_text(note)}" for note in comparison.notes] if comparison.notes else []
    return "\n".join(lines) + "\n"


def _difference_cells(change: MetricChange) -> list[str]:
    """Δ [95% CI], p and n of a change; an unpaired one has only its plain difference."""
    difference = change.difference
    if difference is None:
        return [f"{change.new - change.base:+.4g} (unpaired)", "—", "—"]
    return [f"{difference.difference:+.4g} {format_interval(difference.ci_low, difference.ci_high)}",
            f"{difference.p_value:.3f}", str(difference.n)]
