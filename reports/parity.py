"""Parity of each deployable form with its parent: is `adapter+merged` still `adapter`, `base+gguf` still `base`?

A form (merged, pruned, int8, nf4, gguf) is scored on the same examples as its parent — the
configuration without its last form — and every metric is paired example by example with the
test `compare` uses (reports/changes.py), the form's metrics judged as one family (Holm). Beside the verdicts stands what the form saves: bytes on
disk, peak resident memory while serving the evaluation, seconds per example and tokens/s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reports.changes import GateSettings, MetricChange, decide_family, metric_changes
from reports.formatting import format_interval
from reports.schema import ResultFile
from stats.verdicts import IDENTICAL, IMPROVED, NEGLIGIBLE, NO_CHANGE, UNDECIDED, gain
from tasks.pairing import higher_is_better


@dataclass
class Footprint:
    """What serving one configuration took during its evaluation (None: not recorded)."""

    model_bytes: int | None
    peak_memory_bytes: int | None
    seconds_per_example: float | None
    tokens_per_second: float | None
    engine: str | None


@dataclass
class FormParity:
    configuration: str
    parent: str
    changes: list[MetricChange]
    form: Footprint
    parent_footprint: Footprint
    notes: list[str] = field(default_factory=list)     # unscored tasks, unpaired metrics

    @property
    def regressions(self) -> list[MetricChange]:
        return [change for change in self.changes if change.fails]


def form_parities(results: list[ResultFile], max_drop: dict[str, float] | None = None, *, n_resamples: int = 1000,
                  seed: int = 0, settings: GateSettings | None = None) -> list[FormParity]:
    """Each form configuration of a run against its parent, task by task, metric by metric."""
    by_key = {(r.configuration, r.task): r for r in results}
    parents = {r.configuration: r.model.get("parent") for r in results if r.model.get("parent")}
    parities = []
    for configuration, parent in parents.items():
        mine = {task: r for (c, task), r in by_key.items() if c == configuration}
        theirs = {task: r for (c, task), r in by_key.items() if c == parent}
        notes: list[str] = []
        if not theirs:
            notes.append(f"{parent} has no results in this run: nothing to pair {configuration} with")
        changes = []
        for task in theirs:
            if task not in mine:
                notes.append(f"{task}: {parent} was scored, {configuration} was not")
                continue
            changes += metric_changes(theirs[task], mine[task], max_drop or {}, notes, n_resamples, seed)
        decide_family(changes, settings or GateSettings())
        parities.append(FormParity(configuration, parent, changes, footprint(list(mine.values())),
                                   footprint(list(theirs.values())), notes))
    return parities


def footprint(results: list[ResultFile]) -> Footprint:
    """A configuration's serving figures over all its tasks: largest peak, pooled speeds."""
    serving = [r.cost.get("serving") or {} for r in results]
    seconds = sum(r.cost.get("eval_seconds", 0.0) for r in results)
    examples = sum(len(r.examples) for r in results)
    tokens = sum(r.cost.get("tokens_per_second", 0.0) * r.cost.get("eval_seconds", 0.0) for r in results)
    peaks = [s["peak_memory_bytes"] for s in serving if s.get("peak_memory_bytes")]
    sizes = [s["model_bytes"] for s in serving if s.get("model_bytes")]
    has_tokens = any("tokens_per_second" in r.cost for r in results)
    return Footprint(model_bytes=max(sizes) if sizes else None, peak_memory_bytes=max(peaks) if peaks else None,
                     seconds_per_example=seconds / examples if examples and seconds else None,
                     tokens_per_second=tokens / seconds if seconds and has_tokens else None,
                     engine=next((s["engine"] for s in serving if s.get("engine")), None))


def parity_verdict(change: MetricChange) -> str:
    """`indistinguishable at n = …`, `worse by X [CI]`, `better by X [CI]`, undecided, or why not tested."""
    difference = change.difference
    if difference is None or change.decision is None:
        return change.verdict
    verdict = change.decision.verdict
    if verdict == IDENTICAL:
        return "identical on every example"
    if verdict == NEGLIGIBLE:
        return "equal within 0.01%"
    if verdict == UNDECIDED:
        return f"cannot decide at n = {difference.n} ({change.decision.reason})"
    if verdict == NO_CHANGE:
        return f"indistinguishable at n = {difference.n}"
    low, high = sorted(abs(bound) for bound in (difference.ci_low, difference.ci_high))
    side = "better" if verdict == IMPROVED else "worse"
    return f"{side} by {abs(difference.difference):.4g} {format_interval(low, high)}"


def _differs(change: MetricChange) -> bool:
    """Whether the family's test found the form different from its parent on this metric."""
    return change.decision is not None and change.decision.verdict not in (IDENTICAL, NEGLIGIBLE, UNDECIDED, NO_CHANGE)


def ratio(form: float | None, parent: float | None) -> float | None:
    """form / parent, when both are known and the parent is not zero."""
    return form / parent if form is not None and parent else None


# ----- plain-text rows every renderer shows (Markdown and HTML escape them their own way) ------------

FORMS_NOTE = ("Each form is scored on the same examples as its parent (the configuration without its last form); "
              "every metric is paired example by example with the paired randomization test, each form's metrics "
              "judged as one family (Holm's correction, α = 0.05): the test `domainbench compare --forms` gates on.")
SAVINGS_HEADER = ("", "parent", "form", "form / parent")
CHANGES_HEADER = ("task", "metric", "parent", "form", "Δ form − parent [95% CI]", "verdict")


def headline(parity: FormParity) -> str:
    """One sentence: the same model in practice, or where it differs."""
    tested = [c for c in parity.changes if c.difference is not None]
    differing = [c for c in tested if _differs(c)]
    if not tested:
        return f"{parity.configuration} could not be paired with {parity.parent} on any metric."
    if not differing:
        return (f"{parity.configuration} is indistinguishable from {parity.parent} on all {len(tested)} paired "
                "metrics at this n.")
    worse = [c for c in differing if gain(c.difference.difference, higher_is_better(c.metric)) < 0]
    better = [c for c in differing if c not in worse]
    sides = [f"{label} on {', '.join(f'{c.task} {c.metric}' for c in changes[:4])}{' …' if len(changes) > 4 else ''}"
             for label, changes in (("worse", worse), ("better", better)) if changes]
    return (f"{parity.configuration} differs significantly from {parity.parent} on {len(differing)} of "
            f"{len(tested)} paired metrics: {'; '.join(sides)}.")


def savings_rows(parity: FormParity) -> list[list[str]]:
    from reports.formatting import format_seconds

    def megabytes(value):
        return None if value is None else value / 2**20

    rows = []
    for label, form, parent, show in (
            ("size on disk", megabytes(parity.form.model_bytes), megabytes(parity.parent_footprint.model_bytes),
             lambda v: f"{v:,.1f} MB"),
            ("peak memory (RSS while evaluating)", megabytes(parity.form.peak_memory_bytes),
             megabytes(parity.parent_footprint.peak_memory_bytes), lambda v: f"{v:,.0f} MB"),
            ("latency per example", parity.form.seconds_per_example, parity.parent_footprint.seconds_per_example,
             format_seconds),
            ("tokens/s", parity.form.tokens_per_second, parity.parent_footprint.tokens_per_second,
             lambda v: f"{v:,.0f} tok/s")):
        share = ratio(form, parent)
        rows.append([label, "—" if parent is None else show(parent), "—" if form is None else show(form),
                     "—" if share is None else f"{share:.2f}×"])
    rows.append(["engine", parity.parent_footprint.engine or "—", parity.form.engine or "—", ""])
    return rows


def change_rows(parity: FormParity) -> list[list[str]]:
    from reports.formatting import format_value

    rows = []
    for change in parity.changes:
        difference = change.difference
        delta = ("—" if difference is None else
                 f"{difference.difference:+.4g} {format_interval(difference.ci_low, difference.ci_high)}")
        rows.append([change.task, change.metric, format_value(change.base), format_value(change.new), delta,
                     parity_verdict(change)])
    return rows


SERVING_HEADER = ("configuration", "engine", "size on disk", "peak memory (RSS while evaluating)", "latency / example",
                  "tokens/s")


def serving_row(configuration: str, figures: Footprint) -> list[str]:
    """What serving one configuration took during its evaluation, as plain text cells."""
    from reports.formatting import MISSING, format_seconds

    def megabytes(value, decimals):
        return MISSING if value is None else f"{value / 2**20:,.{decimals}f} MB"

    return [configuration, figures.engine or MISSING, megabytes(figures.model_bytes, 1),
            megabytes(figures.peak_memory_bytes, 0), format_seconds(figures.seconds_per_example),
            MISSING if figures.tokens_per_second is None else f"{figures.tokens_per_second:,.0f} tok/s"]
