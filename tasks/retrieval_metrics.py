"""Retrieval metrics of a task's records, aggregated with bootstrap intervals like every other metric.

The per-example judging (recall@k, MRR, nDCG@k against the gold documents) is retrieval's own
(`retrieval.metrics`); the interval arithmetic is the `stats` room's.
"""

from __future__ import annotations

import numpy as np

from retrieval.metrics import retrieval_scores
from stats.intervals import Metric, bootstrap_ci
from stats.statistic import mean_of


def aggregate_retrieval(per_example: list[dict[str, float]]) -> dict[str, Metric]:
    """Mean of each retrieval score over the examples that have it, with a bootstrap 95% interval."""
    names = list(dict.fromkeys(name for scores in per_example for name in scores))
    metrics = {}
    for name in names:
        values = np.array([scores[name] for scores in per_example if name in scores], dtype=float)
        metrics[name] = bootstrap_ci(values, mean_of(0))
    return metrics


def retrieval_metrics(records) -> dict[str, Metric]:
    """recall@k, MRR and nDCG@k over the records (ExampleRecord) that name gold documents.

    Recomputed from each record's stored `retrieved` chunks, so `domainbench rescore` gets
    the same figures without an index or a model.
    """
    per_example = [retrieval_scores(record.retrieved or [], {"doc_ids": record.retrieval_gold["gold"]},
                                    record.retrieval_gold["k"])
                   for record in records if record.retrieval_gold]
    return aggregate_retrieval(per_example) if per_example else {}
