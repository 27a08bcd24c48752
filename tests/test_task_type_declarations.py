"""Each task type declares its own defaults — rag mode, quotable reference, each metric's direction and
range, its headline metrics — and they give every answer the tables they replaced gave.

The tables below are tasks/rag_policy.py's and tasks/pairing.py's as they stood before the
declarations moved into the task type modules (issue 25), frozen here as the specification.
"""

from itertools import combinations

import pytest

from retrieval.metrics import retrieval_scores
from tasks.pairing import headline_metric, higher_is_better, metric_scale, primary_metric
from tasks.rag_policy import exclusion, rag_mode
from tasks.registry import TASK_TYPES
from tasks.spec import TaskSpec
from tasks.suite import load_suite

OLD_DEFAULT_RAG_MODES = {"qa": "on", "summarization": "exclude-source", "classification": "exclude-source",
                         "ner": "exclude-source", "perplexity": "off", "multiple_choice": "exclude-source"}
OLD_REFERENCE_FIELDS = {"summarization": "summary"}
OLD_LOWER_IS_BETTER = frozenset({"token_perplexity", "word_perplexity", "bits_per_byte"})
OLD_PERCENT_SCALE = frozenset({"bleu"})
OLD_HEADLINE_METRICS = ("f1", "accuracy", "rougeL", "exact_match", "bleu", "word_perplexity", "token_perplexity",
                        "bits_per_byte")


def old_metric_scale(metric: str) -> float | None:
    if metric in OLD_LOWER_IS_BETTER:
        return None
    return 100.0 if metric in OLD_PERCENT_SCALE else 1.0


def old_headline(metrics) -> str:
    return next((m for m in OLD_HEADLINE_METRICS if m in metrics), next(iter(metrics)))


def reported_metric_names() -> set[str]:
    """Every metric name a result file carries today: each type's metrics, NER's per-type F1 over the
    builtin suites' entity types, and the retrieval metrics of a `+rag` run."""
    ner_types = {label for suite in ("tiny", "manpages") for task in load_suite(suite).tasks
                 if task.type == "ner" for label in task.labels}
    retrieval = set(retrieval_scores([], {"doc_ids": ["page"]}, 4))
    return {name for module in TASK_TYPES.values() for name in module.METRICS} | {f"f1_{t}" for t in ner_types} | retrieval


def test_every_reported_metric_keeps_its_direction_and_range():
    names = sorted(reported_metric_names())
    assert {"bleu", "f1_ERRNO", "recall@4", "retrieved_ndcg@4", "word_perplexity"} <= set(names)
    assert {name: (higher_is_better(name), metric_scale(name)) for name in names} == {
        name: (name not in OLD_LOWER_IS_BETTER, old_metric_scale(name)) for name in names}


@pytest.mark.parametrize("type_name", sorted(TASK_TYPES))
def test_every_subset_of_a_type_metrics_keeps_its_headline(type_name):
    metrics = list(TASK_TYPES[type_name].METRICS)
    subsets = [list(subset) for size in range(1, len(metrics) + 1) for subset in combinations(metrics, size)]
    with_retrieval = [[*subset, "recall@4", "mrr"] for subset in subsets] + [["recall@4", *subset] for subset in subsets]
    for reported in subsets + with_retrieval:
        assert headline_metric(type_name, reported) == old_headline(reported), reported


def test_primary_metric_is_the_named_one_else_the_type_headline():
    class Result:
        task_type = "qa"
        metrics = {"exact_match": 1.0, "f1": 1.0, "answer_containment": 1.0}
        settings = {"primary_metric": None}

    assert primary_metric(Result) == "f1"
    Result.settings = {"primary_metric": "answer_containment"}
    assert primary_metric(Result) == "answer_containment"


def test_every_type_keeps_its_rag_default_and_quotable_reference():
    assert {name: rag_mode(None, name) for name in TASK_TYPES} == OLD_DEFAULT_RAG_MODES
    example = {"id": "x", "document": "d", "summary": "renames a file", "text": "t", "question": "q",
               "source": {"doc_id": "rename.2"}}
    for name in TASK_TYPES:
        task = TaskSpec(name="t", type=name, template="", data={}, examples={}, rag="exclude-source")
        field = OLD_REFERENCE_FIELDS.get(name)
        assert exclusion(task, example).phrases == ((example[field],) if field else ()), name
        assert exclusion(task, example).doc_ids == frozenset({"rename.2"})
