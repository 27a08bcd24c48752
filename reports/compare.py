"""The regression gate: two runs of one suite, compared configuration by configuration, task by task.

Every metric both result files report is compared (or, with `primary_only`, each task's primary
metric): the task's own, per-type F1, retrieval metrics (tasks/pairing.py says how each is rebuilt
per example). Each difference is tested with the paired randomization test on the examples both
runs scored (matched by example id), and all the tests of one comparison are judged as one family
(`reports.changes.decide_family`: Holm's correction by default) under the named semantics — a
significant drop beyond tolerance, or non-inferiority within a margin. A metric that cannot be
rebuilt per example is still listed, with its plain difference and the verdict that it was not
tested; one that only one run reports is noted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DomainbenchError
from reports.changes import (
    NOT_TESTED,
    REGRESSION,
    GateSettings,
    MetricChange,
    decide_family,
    family_size,
    metric_changes,
)
from reports.formatting import format_interval, format_value
from reports.render_markdown import markdown_text, table
from reports.schema import ResultFile
from reports.summary import load_run_results, run_name
from stats.verdicts import UNDECIDED, interval_note
from tasks.pairing import primary_metric

__all__ = ["NOT_TESTED", "REGRESSION", "MetricChange", "Comparison", "compare_runs", "parse_max_drop",
           "render_comparison"]


@dataclass
class Comparison:
    base_run: str
    new_run: str
    suite: str
    changes: list[MetricChange]
    notes: list[str] = field(default_factory=list)
    settings: GateSettings = field(default_factory=GateSettings)

    @property
    def regressions(self) -> list[MetricChange]:
        """The changes that fail the gate (a regression, or not shown non-inferior)."""
        return [change for change in self.changes if change.fails]

    @property
    def undecided(self) -> list[MetricChange]:
        return [change for change in self.changes if change.verdict == UNDECIDED]

    @property
    def family_size(self) -> int:
        return family_size(self.changes)


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
                 n_resamples: int = 1000, seed: int = 0, settings: GateSettings | None = None,
                 primary_only: bool = False, allow_incomplete: bool = False) -> Comparison:
    """Every shared (configuration, task, metric) of two runs, tested and judged as one family."""
    max_drop = max_drop or {}
    settings = settings or GateSettings()
    base_results, new_results = load_run_results(base_dir), load_run_results(new_dir)
    suite = _same_suite(base_dir, base_results, new_dir, new_results)
    base = {(r.configuration, r.task): r for r in base_results}
    new = {(r.configuration, r.task): r for r in new_results}
    shared = [key for key in base if key in new]
    if not shared:
        raise DomainbenchError(f"{base_dir} and {new_dir} share no (configuration, task) result to compare")
    _check_tolerances(max_drop, [(base[key], new[key]) for key in shared])
    _check_margins(max_drop, settings, [(base[key], new[key]) for key in shared], primary_only)
    comparison = Comparison(run_name(base_dir, base_results), run_name(new_dir, new_results), suite, [],
                            settings=settings)
    comparison.notes += _unmatched_notes(base, new)
    for key in shared:
        metrics = [primary_metric(base[key])] if primary_only else None
        comparison.changes += metric_changes(base[key], new[key], max_drop, comparison.notes, n_resamples, seed,
                                             metrics=metrics, allow_incomplete=allow_incomplete)
    if not comparison.changes:
        raise DomainbenchError(f"{base_dir} and {new_dir} share no scored example (example ids differ)")
    decide_family(comparison.changes, settings)
    return comparison


def compare_forms(run_dir: Path, max_drop: dict[str, float] | None = None, *, n_resamples: int = 1000,
                  seed: int = 0, settings: GateSettings | None = None) -> Comparison:
    """Every deployable form of one run against its parent (reports/parity.py), as a gate like `compare_runs`."""
    from reports.parity import form_parities

    results = load_run_results(run_dir)
    max_drop = max_drop or {}
    if not any(r.model.get("parent") for r in results):
        raise DomainbenchError(f"{run_dir}: no configuration is a form (merged, pruned, int8, nf4, gguf) of another")
    settings = settings or GateSettings()
    _check_tolerances(max_drop, [(r, r) for r in results])
    _check_margins(max_drop, settings, [(r, r) for r in results], primary_only=False)
    parities = form_parities(results, max_drop, n_resamples=n_resamples, seed=seed, settings=settings)
    name = run_name(run_dir, results)
    comparison = Comparison(f"{name} (parents)", f"{name} (forms)", str(results[0].suite.get("name")), [],
                            settings=settings)
    for parity in parities:
        for change in parity.changes:
            change.configuration = f"{parity.configuration} vs {parity.parent}"
        comparison.changes += parity.changes
        comparison.notes += [f"{parity.configuration}: {note}" for note in parity.notes]
    # One gate over every form: the forms' tests are judged again as a single family.
    decide_family(comparison.changes, settings)
    return comparison


def compare_variants(run_dir: Path, max_drop: dict[str, float] | None = None, *, n_resamples: int = 1000,
                     seed: int = 0, settings: GateSettings | None = None) -> Comparison:
    """Every variant of one run (`adapter@rc`) against its plain configuration (`adapter`), as one gate.

    The same paired test as `compare_runs`, example by example on the run's shared test examples:
    does augmenting the training data change the scores, and by how much?
    """
    results = load_run_results(run_dir)
    max_drop = max_drop or {}
    settings = settings or GateSettings()
    by_key = {(r.configuration, r.task): r for r in results}
    pairs = [(by_key[(r.model["variant_of"], r.task)], r) for r in results
             if r.model.get("variant_of") and (r.model["variant_of"], r.task) in by_key]
    if not pairs:
        raise DomainbenchError(f"{run_dir}: no variant (e.g. adapter@rc) was evaluated beside its plain configuration")
    _check_tolerances(max_drop, pairs)
    _check_margins(max_drop, settings, pairs, primary_only=False)
    name = run_name(run_dir, results)
    comparison = Comparison(f"{name} (plain)", f"{name} (variants)", str(results[0].suite.get("name")), [],
                            settings=settings)
    for plain, variant in pairs:
        changes = metric_changes(plain, variant, max_drop, comparison.notes, n_resamples, seed)
        for change in changes:
            change.configuration = f"{variant.configuration} vs {plain.configuration}"
        comparison.changes += changes
    decide_family(comparison.changes, settings)
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


def _check_margins(max_drop: dict[str, float], settings: GateSettings, pairs: list[tuple[ResultFile, ResultFile]],
                   primary_only: bool) -> None:
    """Non-inferiority needs a positive margin for every metric it gates."""
    if settings.semantics != "non-inferiority":
        return
    gated = {primary_metric(base) for base, _ in pairs} if primary_only else {
        metric for base, new in pairs for metric in base.metrics if metric in new.metrics}
    missing = sorted(metric for metric in gated if max_drop.get(metric, 0.0) <= 0)
    if missing:
        raise DomainbenchError(f"--semantics non-inferiority: give a positive margin for every gated metric "
                               f"(--max-drop {missing[0]}=δ); missing: {', '.join(missing)}")


def _unmatched_notes(base: dict, new: dict) -> list[str]:
    notes = []
    for label, keys in (("only in the base run", base.keys() - new.keys()), ("only in the new run", new.keys() - base.keys())):
        if keys:
            notes.append(f"{label} (not compared): " + ", ".join(f"{c}/{t}" for c, t in sorted(keys)))
    return notes


def render_comparison(comparison: Comparison) -> str:
    """A Markdown table fit for a CI comment, with the verdict first."""
    settings = comparison.settings
    rows = [[markdown_text(c.configuration), markdown_text(c.task), markdown_text(c.metric), format_value(c.base),
             format_value(c.new), *_difference_cells(c), _verdict_cell(c, settings.alpha)] for c in comparison.changes]
    lines = [f"### domainbench compare: {markdown_text(comparison.base_run)} → {markdown_text(comparison.new_run)}",
             "", f"**{headline(comparison)}**", "",
             f"Suite {markdown_text(comparison.suite)}. {settings.sentence(comparison.family_size)} Δ = new − base "
             "with its 95% paired bootstrap interval on the examples both runs scored; p is the paired "
             "randomization test's, p adj. after the correction; n counts the examples (those that differ in "
             "brackets).", "",
             table(["configuration", "task", "metric", "base", "new", "Δ [95% CI]", "p", "p adj.", "n (differ)",
                    "verdict"], rows)]
    lines += [""] + [f"- {markdown_text(note)}" for note in comparison.notes] if comparison.notes else []
    return "\n".join(lines) + "\n"


def headline(comparison: Comparison) -> str:
    """The gate's outcome in one line: failures, else undecided comparisons, else a pass."""
    failing, undecided = comparison.regressions, comparison.undecided
    if failing:
        kind = "significant regression" if comparison.settings.semantics == "drop" else "metric not shown non-inferior"
        return f"{len(failing)} {kind}{'s' if len(failing) != 1 else ''} beyond tolerance"
    if undecided:
        return (f"No failure, but {len(undecided)} of {comparison.family_size} comparisons cannot decide at "
                "their n")
    if comparison.settings.semantics == "non-inferiority":
        return f"All {comparison.family_size} metrics shown non-inferior"
    return "No significant regression beyond tolerance"


def _verdict_cell(change: MetricChange, alpha: float) -> str:
    """The verdict (bold when it fails), then why: the decision's reason and any interval caveat."""
    verdict = f"**{change.verdict}**" if change.fails else markdown_text(change.verdict)
    reasons = [change.decision.reason] if change.decision and change.decision.reason else []
    if change.difference is not None and (note := interval_note(change.difference, alpha)):
        reasons.append(note)
    return f"{verdict} ({markdown_text('; '.join(reasons))})" if reasons else verdict


def _difference_cells(change: MetricChange) -> list[str]:
    """Δ [95% CI], p, adjusted p and n of a change; an unpaired one has only its plain difference."""
    difference = change.difference
    if difference is None:
        return [f"{change.new - change.base:+.4g} (unpaired)", "—", "—", "—"]
    return [f"{difference.difference:+.4g} {format_interval(difference.ci_low, difference.ci_high)}",
            f"{difference.p_value:.3g}", f"{change.p_adjusted:.3g}" if change.p_adjusted is not None else "—",
            f"{difference.n} ({difference.n_differing})"]
