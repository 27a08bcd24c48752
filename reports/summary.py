"""One run's result files gathered into the table model every report is rendered from.

Per task: configurations x metrics, each with its 95% interval; the best configuration of a metric
is marked (★) only when the paired randomization test finds it significantly better than every
other one, with Holm's correction over every ★ claim the report makes. Per configuration: what it
cost, item by item, and whether its training converged. Per task: a recommendation (the best, and
the cheapest configuration the paired test does not find significantly worse than it), the share
of degenerate predictions, and a few example predictions.

A configuration that did not converge at its training budget stays in every table, flagged, but is
never the marked best nor the recommendation: its figures describe a failure, not the strategy.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from harness.errors import DomainbenchError
from reports.costs import ConfigurationCost, configuration_cost
from reports.failures import (
    NOT_CONVERGED,
    ConvergenceFailure,
    OutputShares,
    convergence_failures,
    output_shares,
)
from reports.load_tests import LoadTest, load_run_load_tests
from reports.parity import Footprint, FormParity, footprint, form_parities
from reports.schema import RESULTS_DIR, ResultFile, load_result
from reports.stars import best_configuration, mark_best
from reports.tables import MetricCell, TaskTable
from stats.verdicts import ALPHA, IMPROVED, difference_decision
from tasks.pairing import higher_is_better, paired_differences

SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
EXAMPLES_PER_TASK = 3



# Under the recommendations in every rendering: what "cheapest" weighs.
CHEAPEST_NOTE = ("Cheapest means least compute (training time plus evaluation time on the task) among the "
                 "configurations the paired randomization test does not find significantly worse than the best "
                 "(each comparison at α = 0.05).")


@dataclass
class Recommendation:
    task: str
    metric: str
    best: str | None      # None when every configuration reporting the metric did not converge
    best_is_significant: bool
    cheapest: str | None  # cheapest ranked configuration not significantly worse than the best (paired)
    set_aside: list[str] = field(default_factory=list)  # reported the metric but did not converge
    cheaper_are_worse: bool = False  # cheaper configurations exist, all significantly worse than the best

    def sentence(self) -> str:
        aside = (f"{', '.join(self.set_aside)} {NOT_CONVERGED} and {'is' if len(self.set_aside) == 1 else 'are'}"
                 " not ranked" if self.set_aside else "")
        if self.best is None:
            return f"{self.task}: no configuration can be recommended on {self.metric} ({aside})."
        verdict = ("significantly better than every other configuration" if self.best_is_significant
                   else "not significantly better than every other configuration")
        line = f"{self.task}: best {self.metric} is {self.best} ({verdict}{'; ' + aside if aside else ''})"
        if self.cheapest and self.cheapest != self.best:
            return f"{line}; {self.cheapest} is the cheapest configuration not significantly worse than it."
        if self.cheapest and self.cheaper_are_worse:
            return f"{line}; every cheaper configuration is significantly worse."
        if self.cheapest:
            return f"{line}; it is also the cheapest configuration."
        return f"{line}; cost figures are missing, so no cheaper alternative can be named."


@dataclass
class ExampleRow:
    id: str
    reference: str
    predictions: dict[str, str]  # configuration -> prediction as text (untrusted: escape when rendering)


@dataclass
class RunSummary:
    run: str
    suite: dict
    configurations: list[str]
    tables: list[TaskTable]
    costs: dict[str, ConfigurationCost]
    recommendations: list[Recommendation]
    examples: dict[str, list[ExampleRow]] = field(default_factory=dict)
    not_converged: dict[str, list[ConvergenceFailure]] = field(default_factory=dict)  # configuration -> failures
    degenerate: dict[str, dict[str, OutputShares]] = field(default_factory=dict)      # task -> configuration -> shares
    forms: list[FormParity] = field(default_factory=list)                              # each form against its parent
    serving: dict[str, Footprint] = field(default_factory=dict)                        # configuration -> what serving it took
    load_tests: dict[str, LoadTest] = field(default_factory=dict)                      # configuration -> its endpoint under load
    star_family: int = 0                   # ★ claims tested together (Holm's family)
    setup: str = ""                        # the profile and the knowledge base, in one sentence

    def star_sentence(self) -> str:
        """What a ★ means, with the size of the family it was corrected over."""
        return (f"★ marks a configuration significantly better than every other on that metric (paired "
                f"randomization test against each, α = {ALPHA:g}, Holm's correction over the {self.star_family} "
                "★ claims this report tested).")

    def converged(self, configuration: str) -> bool:
        return not self.not_converged.get(configuration)

    def as_dict(self) -> dict:
        record = asdict(self)
        for table, source in zip(record["tables"], self.tables):
            table["headline"] = source.headline
            table["detectable_difference"] = source.detectable_difference
        return record


def result_paths(run_dir: Path) -> list[Path]:
    """The result files of a run, in (configuration, task) order."""
    results_dir = Path(run_dir) / RESULTS_DIR
    if not results_dir.is_dir():
        raise DomainbenchError(f"{run_dir}: not a run directory (no {RESULTS_DIR}/ inside)")
    order = {name: i for i, name in enumerate(_configurations_in_spec_order(run_dir))}
    paths = sorted(results_dir.glob("*/*.json"), key=lambda p: (order.get(p.parent.name, len(order)), str(p)))
    if not paths:
        raise DomainbenchError(f"{results_dir}: no result files (expected {RESULTS_DIR}/<configuration>/<task>.json)")
    return paths


def load_run_results(run_dir: Path) -> list[ResultFile]:
    """Every result file of a run; the schema version check is load_result's."""
    return [load_result(path) for path in result_paths(run_dir)]


def _configurations_in_spec_order(run_dir: Path) -> list[str]:
    """The configurations as run.yaml lists them (a runner-made run), else none."""
    spec = _run_yaml(run_dir)
    names = spec.get("configurations")
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _run_yaml(run_dir: Path) -> dict:
    spec_path = Path(run_dir) / "run.yaml"
    if not spec_path.exists():
        return {}
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    return spec if isinstance(spec, dict) else {}


def run_name(run_dir: Path, results: list[ResultFile]) -> str:
    name = _run_yaml(run_dir).get("name")
    return name if isinstance(name, str) else results[0].run or Path(run_dir).name


def build_summary(run_dir: Path, *, n_resamples: int = 1000, seed: int = 0) -> RunSummary:
    """The table model of a run, from its result files alone."""
    results = load_run_results(run_dir)
    _check_one_suite(results)
    configurations = list(dict.fromkeys(r.configuration for r in results))
    by_task: dict[str, dict[str, ResultFile]] = {}
    for result in results:
        by_task.setdefault(result.task, {})[result.configuration] = result
    by_configuration = {c: [r for r in results if r.configuration == c] for c in configurations}
    costs = {c: configuration_cost(c, by_configuration[c]) for c in configurations}
    not_converged = {c: failures for c in configurations if (failures := convergence_failures(by_configuration[c]))}
    ranked = [c for c in configurations if c not in not_converged]
    tables = [_task_table(task, by_config) for task, by_config in by_task.items()]
    star_family = mark_best(tables, by_task, ranked, n_resamples=n_resamples, seed=seed)
    return RunSummary(
        run=run_name(run_dir, results), suite={"name": results[0].suite.get("name"),
                                               "fingerprint": results[0].suite.get("fingerprint")},
        configurations=configurations, tables=tables, costs=costs,
        recommendations=[recommend(table, by_task[table.task], costs, ranked, n_resamples=n_resamples, seed=seed)
                         for table in tables],
        examples={task: example_rows(by_config) for task, by_config in by_task.items()},
        not_converged=not_converged, degenerate=_degenerate_shares(by_task),
        forms=form_parities(results, n_resamples=n_resamples, seed=seed),
        serving={c: footprint(by_configuration[c]) for c in configurations},
        load_tests=_in_order(load_run_load_tests(run_dir), configurations), star_family=star_family,
        setup=setup_sentence(_run_yaml(run_dir).get("profile"), results))


def setup_sentence(profile, results: list[ResultFile]) -> str:
    """`Profile quick. Knowledge base: whole corpus, hybrid retrieval, k = 4.` from run.yaml and the results."""
    parts = [f"Profile {profile}." if isinstance(profile, str) else ""]
    rag = next((r.settings["rag"] for r in results if isinstance(r.settings.get("rag"), dict)), None)
    if rag:
        parts.append(f"Knowledge base: {rag.get('index_scope', 'test pages')}, {rag.get('retrieval', 'dense')} "
                     f"retrieval, k = {rag.get('k')}, a prompt budget of {rag.get('context_budget_tokens')} tokens.")
    return " ".join(part for part in parts if part)


def _in_order(load_tests: dict[str, LoadTest], configurations: list[str]) -> dict[str, LoadTest]:
    """The load tests in the run's configuration order, any of another configuration after them."""
    order = {c: i for i, c in enumerate(configurations)}
    return dict(sorted(load_tests.items(), key=lambda item: order.get(item[0], len(order))))


def _degenerate_shares(by_task: dict[str, dict[str, ResultFile]]) -> dict[str, dict[str, OutputShares]]:
    shares = {task: {c: output_shares(r) for c, r in by_config.items()} for task, by_config in by_task.items()}
    return {task: {c: s for c, s in by_config.items() if s is not None} for task, by_config in shares.items()
            if any(s is not None for s in by_config.values())}


def _check_one_suite(results: list[ResultFile]) -> None:
    names = {r.suite.get("name") for r in results}
    if len(names) > 1:
        raise DomainbenchError(f"run {results[0].run}: result files come from several suites "
                               f"({', '.join(sorted(map(str, names)))}); a run evaluates one suite")


def _task_table(task: str, by_config: dict[str, ResultFile]) -> TaskTable:
    first = next(iter(by_config.values()))
    metrics = list(dict.fromkeys(m for r in by_config.values() for m in r.metrics))
    cells = {config: {m: MetricCell(**{k: r.metrics[m][k] for k in ("value", "ci_low", "ci_high", "n")})
                      for m in metrics if m in r.metrics}
             for config, r in by_config.items()}
    return TaskTable(task, first.task_type, metrics, cells, {c: len(r.examples) for c, r in by_config.items()})


def recommend(table: TaskTable, by_config: dict[str, ResultFile], costs: dict[str, ConfigurationCost],
              ranked: list[str], *, n_resamples: int, seed: int) -> Recommendation:
    """Best ranked configuration on the task's headline metric, and the cheapest ranked one as good as it.

    "As good" is the test behind the ★: the paired randomization test on the shared examples does not
    find it significantly worse (each comparison at α, uncorrected: a looser "as good" never hides a
    cheaper configuration). Overlapping per-configuration intervals would say less, and could name a
    cheaper configuration that the same report marks as significantly beaten.
    """
    metric = table.headline
    set_aside = [c for c in table.configurations if metric in table.cells[c] and c not in ranked]
    best = best_configuration(table, metric, ranked)
    if best is None:
        return Recommendation(table.task, metric, None, False, None, set_aside)
    seconds = {c: costs[c].compute_seconds(table.n_examples[c]) for c in table.configurations
               if c in ranked and metric in table.cells[c]}
    priced = {c: s for c, s in seconds.items() if s is not None}
    as_good = [c for c in priced if c == best or not _significantly_worse(
        by_config[c], by_config[best], metric, n_resamples=n_resamples, seed=seed)]
    cheapest = min(as_good, key=lambda c: (priced[c], c)) if as_good else None
    cheaper = best in priced and any(s < priced[best] for s in priced.values())
    return Recommendation(table.task, metric, best, table.cells[best][metric].best, cheapest, set_aside,
                          cheaper_are_worse=cheapest == best and cheaper)


def _significantly_worse(result: ResultFile, best: ResultFile, metric: str, *, n_resamples: int, seed: int) -> bool:
    compared = paired_differences(result, best, [metric], n_resamples=n_resamples, seed=seed).get(metric)
    return compared is not None and difference_decision(
        compared.difference, value_a=compared.value_a, value_b=compared.value_b,
        higher_is_better=higher_is_better(metric)).verdict == IMPROVED



def example_rows(by_config: dict[str, ResultFile], limit: int = EXAMPLES_PER_TASK) -> list[ExampleRow]:
    """The first `limit` examples every configuration scored, with each configuration's prediction."""
    results = list(by_config.values())
    shared = set.intersection(*({e["id"] for e in r.examples} for r in results))
    ids = [e["id"] for e in results[0].examples if e["id"] in shared][:limit]
    by_id = {c: {e["id"]: e for e in r.examples} for c, r in by_config.items()}
    rows = []
    for example_id in ids:
        first = by_id[results[0].configuration][example_id]
        if first.get("prediction") is None:
            continue  # log-likelihood tasks (perplexity) have no text to show
        rows.append(ExampleRow(example_id, as_text(first.get("reference")),
                               {c: as_text(examples[example_id].get("prediction")) for c, examples in by_id.items()}))
    return rows


def as_text(value) -> str:
    """A prediction or reference as plain text: NER entities as `TYPE: text; …`, other structures as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, dict) and isinstance(value.get("entities"), list):
        value = value["entities"]  # an NER prediction: the located entities, not the raw output
    if isinstance(value, list) and all(isinstance(e, dict) and {"type", "text"} <= e.keys() for e in value):
        return entities_text(value)
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def entities_text(entities: list[dict]) -> str:
    """`PER: Ada; ORG: Bell Labs (not in the text)`; `(no entities)` for none."""
    if not entities:
        return "(no entities)"
    return "; ".join(f"{e['type']}: {e['text']}" + (" (not in the text)" if e.get("start", 0) is None else "")
                     for e in entities)


def summary_json(summary: RunSummary) -> str:
    return json.dumps(summary.as_dict(), indent=1, ensure_ascii=False) + "\n"


CSV_COLUMNS = ("task", "task_type", "configuration", "metric", "value", "ci_low", "ci_high", "n", "best", "converged",
               "training_seconds", "peak_memory_mb", "trainable_params", "total_params", "artifact_mb",
               "eval_seconds_per_example")
_CSV_COST_COLUMNS = CSV_COLUMNS[10:]


def summary_csv(summary: RunSummary) -> str:
    """One row per (task, configuration, metric), the configuration's total cost repeated on each row.

    The itemised costs are in summary.json.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for table in summary.tables:
        for config, cells in table.cells.items():
            cost = summary.costs[config].as_dict()
            for metric, cell in cells.items():
                writer.writerow([table.task, table.task_type, config, metric, cell.value, cell.ci_low, cell.ci_high,
                                 cell.n, int(cell.best), int(summary.converged(config)),
                                 *("" if cost[k] is None else cost[k] for k in _CSV_COST_COLUMNS)])
    return buffer.getvalue()
