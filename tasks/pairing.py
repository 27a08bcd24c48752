"""Two result files of one task, paired example by example, and their paired tests.

Every metric a result file reports is paired from per-example rows where they exist:
- the task's own metrics (NER's per-type F1 included): the task type says how per-example scores
  become a metric (`metric_statistics` in tasks/); the rows of both sides are built in one call so
  that they share columns (NER's entity types are the union of both sides' types);
- retrieval metrics (recall@k, MRR, nDCG@k): recomputed per example from the stored retrieved
  chunks and gold documents (`retrieval.metrics.retrieval_scores`), on the examples both sides
  judged.
`stats.paired.paired_test` then tests the shared examples. A metric neither source can rebuild per
example is left to the caller to report unpaired. Each metric's direction and range (what "better"
and "a drop of δ" mean) and which one a recommendation is made on are the task types' to say
(`METRICS`, `HEADLINE_METRICS`); this module reads them from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrieval.metrics import retrieval_scores
from stats.intervals import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES
from stats.paired import PairedDifference, paired_test
from stats.statistic import Statistic, mean_of
from tasks.records import ExampleRecord
from tasks.registry import TASK_TYPES, task_module
from tasks.spec import TaskSpec
from tasks.task_type import SHARE, MetricSense

# A metric name means the same in every type that computes it (the task types' test holds them to it).
_SENSES: dict[str, MetricSense] = {name: sense for module in TASK_TYPES.values()
                                   for name, sense in module.METRICS.items()}


def headline_metric(task_type: str, metrics) -> str:
    """The figure a recommendation is made on: the first of the type's headline metrics reported, else the first."""
    preferred = task_module(task_type).HEADLINE_METRICS
    return next((m for m in preferred if m in metrics), next(iter(metrics)))


def primary_metric(result) -> str:
    """A result's primary metric: its suite's `primary_metric` when it names one, else the headline rule."""
    named = result.settings.get("primary_metric")
    if isinstance(named, str) and named in result.metrics:
        return named
    return headline_metric(result.task_type, result.metrics)


def _sense(metric: str) -> MetricSense:
    """What a metric's direction and range are; one no task type declares — retrieval's recall@k, MRR
    and nDCG@k, NER's per-type f1_<TYPE> — is a share that grows with quality."""
    return _SENSES.get(metric, SHARE)


def higher_is_better(metric: str) -> bool:
    return _sense(metric).higher_is_better


def metric_scale(metric: str) -> float | None:
    """The metric's range (None when unbounded): what a drop of δ is measured against."""
    return _sense(metric).scale


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
    """A metric of two results on their shared examples, and the paired test of its difference (b - a)."""

    value_a: float
    value_b: float
    difference: PairedDifference


def paired_differences(result_a, result_b, metrics: list[str], *, n_resamples: int = DEFAULT_RESAMPLES,
                       seed: int = DEFAULT_BOOTSTRAP_SEED) -> dict[str, PairedComparison]:
    """metric(b) - metric(a) on the examples both results share, for each of `metrics` that pairs."""
    compared = {}
    for metric, (rows_a, rows_b, statistic) in paired_rows(result_a, result_b).items():
        if metric in metrics:
            compared[metric] = PairedComparison(float(statistic(rows_a)), float(statistic(rows_b)),
                                                paired_test(rows_a, rows_b, statistic, n_resamples=n_resamples,
                                                            seed=seed))
    return compared


def paired_rows(result_a, result_b) -> dict[str, tuple[np.ndarray, np.ndarray, Statistic]]:
    """{metric: (rows of a, rows of b, statistic)} on the examples both results share (the task's own metrics first)."""
    records_a, records_b = shared_records(result_a, result_b)
    if not records_a:
        return {}
    pairs: dict[str, tuple[np.ndarray, np.ndarray, Statistic]] = {}
    for rows_a, rows_b, statistics in (_task_rows(result_b, records_a, records_b),
                                       _retrieval_rows(records_a, records_b)):
        for metric, statistic in statistics.items():
            pairs.setdefault(metric, (rows_a, rows_b, statistic))
    return pairs


def _task_rows(result, records_a: list[ExampleRecord], records_b: list[ExampleRecord]):
    """(rows a, rows b, {metric: statistic}) of the task type's own metrics."""
    task = task_spec(result)
    rows, statistics = task_module(task.type).metric_statistics(task, records_a + records_b)
    return rows[:len(records_a)], rows[len(records_a):], statistics


def _retrieval_rows(records_a: list[ExampleRecord], records_b: list[ExampleRecord]):
    """(rows a, rows b, {metric: column mean}) of the retrieval metrics both sides judged.

    Only examples judged on both sides are kept (a result may judge a subset: examples without a
    source document have no retrieval score), and only metrics every kept example has (a different
    k on the two sides gives recall@4 on one and recall@8 on the other: nothing to pair).
    """
    judged = [(_retrieval(a), _retrieval(b)) for a, b in zip(records_a, records_b)
              if a.retrieval_gold and b.retrieval_gold]
    if not judged:
        return np.empty((0, 0)), np.empty((0, 0)), {}
    names = [name for name in judged[0][0] if all(name in a and name in b for a, b in judged)]
    rows_a = np.array([[a[name] for name in names] for a, _ in judged], dtype=float)
    rows_b = np.array([[b[name] for name in names] for _, b in judged], dtype=float)
    statistics: dict[str, Statistic] = {name: mean_of(column) for column, name in enumerate(names)}
    return rows_a, rows_b, statistics


def _retrieval(record: ExampleRecord) -> dict[str, float]:
    gold = record.retrieval_gold
    return retrieval_scores(record.retrieved or [], {"doc_ids": gold["gold"]}, gold["k"])

