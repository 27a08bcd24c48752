"""Summarization: generate a summary, score ROUGE-1/2/L/Lsum (rouge-score, stemming on) per
example and corpus BLEU (sacrebleu defaults) from summed per-example n-gram statistics."""

from __future__ import annotations

import numpy as np

from stats.statistic import Statistic, SumStatistic, mean_of
from tasks.metrics import (
    ROUGE_TYPES,
    bleu_signature,
    bleu_statistics,
    corpus_bleu_of_sums,
    rouge_f1,
)
from tasks.records import ExampleRecord
from tasks.spec import TaskSpec
from tasks.task_type import (
    PERCENT,
    SHARE,
    bootstrap_aggregate,
    generation_requests,
    nonempty_string_problems,
    rescore_from_prediction,
    template_training_pair,
)

REQUIRED_FIELDS = ("document", "summary")
DEFAULT_TEMPLATE = "{document}\nSummary:"
DEFAULT_GENERATION = {"max_new_tokens": 64, "stop": ["\n"]}
TAKES_FEWSHOT = True
METRICS = {**dict.fromkeys(ROUGE_TYPES, SHARE), "bleu": PERCENT}
HEADLINE_METRICS = ("rougeL", "bleu")
DEFAULT_RAG = "exclude-source"  # the summary comes with the source page (its NAME line)
QUOTABLE_REFERENCE = "summary"
FEEDBACK_INPUT = "document"


def check_example(task: TaskSpec, example: dict) -> list[tuple[str, str]]:
    return nonempty_string_problems(example, REQUIRED_FIELDS)


def rag_query(example: dict) -> str:
    return example["document"]


def target(task: TaskSpec, example: dict) -> str:
    return " " + example["summary"]


training_pair = template_training_pair(target)
requests_for_prompt = generation_requests


def score(task: TaskSpec, example: dict, responses: list[str]) -> ExampleRecord:
    return score_prediction(example["id"], responses[0].strip(), example["summary"])


def score_prediction(example_id: str, prediction: str, reference: str) -> ExampleRecord:
    scores = {**rouge_f1(prediction, reference), "bleu_statistics": bleu_statistics(prediction, reference)}
    return ExampleRecord(example_id, prediction, reference, scores)


def metric_statistics(task: TaskSpec, records: list[ExampleRecord]) -> tuple[np.ndarray, dict[str, Statistic]]:
    """Rows [ROUGE F-measures, BLEU statistics] per example; ROUGE is a column mean (0-1), BLEU
    is corpus BLEU (0-100, sacrebleu's scale) from the summed statistics."""
    rows = np.array([[r.scores[name] for name in ROUGE_TYPES] + list(r.scores["bleu_statistics"])
                     for r in records], dtype=float)
    statistics = {name: mean_of(column) for column, name in enumerate(ROUGE_TYPES)}
    statistics["bleu"] = SumStatistic(lambda sums, n: corpus_bleu_of_sums(sums[..., len(ROUGE_TYPES):], n))
    return rows, {name: statistics[name] for name in task.metrics}


aggregate = bootstrap_aggregate(metric_statistics)


rescore_record = rescore_from_prediction(score_prediction)


def scoring_settings(task: TaskSpec) -> dict:
    return {"rouge": "rouge-score, use_stemmer=True, F-measure averaged over examples",
            "bleu_signature": bleu_signature()}


def example_from_correction(task: TaskSpec, text: str, correction: str) -> dict:
    return {"document": text, "summary": correction}
