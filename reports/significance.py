"""Paired comparison of two result files of one task, example by example.

The task type says how per-example scores become a metric (`metric_statistics` in tasks/): the
rows of both sides are built in one call so that they share columns (NER's entity types are the
union of both sides' types), then `tasks.stats.paired_bootstrap` resamples the shared examples.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.records import ExampleRecord
from tasks.registry import task_module
from tasks.stats import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES, PairedDifference, paired_bootstrap
from tasks.suite import TaskSpec

SIGNIFICANCE_LEVEL = 0.05

# Metrics where a smaller number is the better model; every other metric grows with quality.
LOWER_IS_BETTER = frozenset({"token_perplexity", "word_perplexity", "bits_per_byte"})


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def task_spec(result) -> TaskSpec:
    """The task as it was evaluated, rebuilt from a result file's recorded settings.

    Scoring needs only the type, the metrics and the labels; the examples stay in the suite.
    """
    settings = result.settings
    return TaskSpec(name=result.task, type=result.task_type, template=settings.get("template", ""), data={},
                    examples={}, metrics=tuple(settings.get("metrics") or result.metrics),
                    generation=settings.get("generation"), labels=settings.get("labels"))


def shared_records(result_a, result_b) -> tuple[list[ExampleRecord], list[ExampleRecord]]:
    """The examples both results scored, matched by id, in the first result's order."""
    by_id_b = {example["id"]: example for example in result_b.examples}
    shared = [example for example in result_a.examples if example["id"] in by_id_b]
    return ([ExampleRecord.from_dict(example) for example in shared],
            [ExampleRecord.from_dict(by_id_b[example["id"]]) for example in shared])


@dataclass(frozen=True)
class PairedComparison:
    """A metric of two results on their shared examples, and the bootstrap of its difference (b - a)."""

    value_a: float
    value_b: float
    difference: PairedDifference


def paired_differences(result_a, result_b, metrics: list[str], *, n_resamples: int = DEFAULT_RESAMPLES,
                       seed: int = DEFAULT_BOOTSTRAP_SEED) -> dict[str, PairedComparison]:
    """metric(b) - metric(a) on the examples both results share, for each metric both report."""
    records_a, records_b = shared_records(result_a, result_b)
    if not records_a:
        return {}
    task = task_spec(result_b)
    rows, statistics = task_module(task.type).metric_statistics(task, records_a + records_b)
    rows_a, rows_b = rows[:len(records_a)], rows[len(records_a):]
    return {metric: PairedComparison(float(statistics[metric](rows_a)), float(statistics[metric](rows_b)),
                                     paired_bootstrap(rows_a, rows_b, statistics[metric], n_resamples=n_resamples,
                                                      seed=seed))
            for metric in metrics if metric in statistics}


def is_significant(difference: PairedDifference) -> bool:
    return difference.p_value < SIGNIFICANCE_LEVEL


def improvement(metric: str, difference: float) -> float:
    """The difference signed so that positive always means better."""
    return difference if higher_is_better(metric) else -difference
