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
from reports.changes import NOT_TESTED, REGRESSION, MetricChange, metric_changes
from reports.formatting import format_interval, format_value
from reports.render_markdown import markdown_text, table
from reports.schema import ResultFile
from reports.summary import load_run_results, run_name

__all__ = ["NOT_TESTED", "REGRESSION", "MetricChange", "Comparison", "compare_runs", "parse_max_drop",
           "render_comparison"]


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
        comparison.changes += metric_changes(base[key], new[key], max_drop, comparison.notes, n_resamples, seed)
    if not comparison.changes:
        raise DomainbenchError(f"{base_dir} and {new_dir} share no scored example (example ids differ)")
    return comparison


def compare_forms(run_dir: Path, max_drop: dict[str, float] | None = None, *, n_resamples: int = 1000,
                  seed: int = 0) -> Comparison:
    """Every deployable form of one run against its parent (reports/parity.py), as a gate like `compare_runs`."""
    from reports.parity import form_parities

    results = load_run_results(run_dir)
    max_drop = max_drop or {}
    if not any(r.model.get("parent") for r in results):
        raise DomainbenchError(f"{run_dir}: no configuration is a form (merged, pruned, int8, nf4, gguf) of another")
    _check_tolerances(max_drop, [(r, r) for r in results])
    parities = form_parities(results, max_drop, n_resamples=n_resamples, seed=seed)
    name = run_name(run_dir, results)
    comparison = Comparison(f"{name} (parents)", f"{name} (forms)", str(results[0].suite.get("name")), [])
    for parity in parities:
        for change in parity.changes:
            change.configuration = f"{parity.configuration} vs {parity.parent}"
        comparison.changes += parity.changes
        comparison.notes += [f"{parity.configuration}: {note}" for note in parity.notes]
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
