"""Summarization: generate a summary, score ROUGE-1/2/L/Lsum (rouge-score, stemming on) per
example and corpus BLEU (sacrebleu defaults) from summed per-example n-gram statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from harness.requests import GenerationRequest
from tasks.metrics import (
    ROUGE_TYPES,
    bleu_signature,
    bleu_statistics,
    corpus_bleu_from_statistics,
    rouge_f1,
)
from tasks.prompts import generation_requests, render
from tasks.records import ExampleRecord
from tasks.stats import Metric, Statistic, bootstrap_metrics, mean_statistic

if TYPE_CHECKING:
    from tasks.suite import TaskSpec

REQUIRED_FIELDS = ("document", "summary")
DEFAULT_TEMPLATE = "{document}\nSummary:"
DEFAULT_GENERATION = {"max_new_tokens": 64, "stop": ["\n"]}
TAKES_FEWSHOT = True
METRICS = (*ROUGE_TYPES, "bleu")


def check_example(task: "TaskSpec", example: dict) -> list[tuple[str, str]]:
    return [(name, "expected a non-empty string") for name in REQUIRED_FIELDS
            if not isinstance(example.get(name), str) or not example[name].strip()]


def rag_query(example: dict) -> str:
    return example["document"]


def target(task: "TaskSpec", example: dict) -> str:
    return " " + example["summary"]


def training_pair(task: "TaskSpec", example: dict) -> tuple[str, str]:
    return render(task.template, example), target(task, example)


def requests_for_prompt(task: "TaskSpec", example: dict, prompt: str) -> list[GenerationRequest]:
    return generation_requests(task, prompt)




def score(task: "TaskSpec", example: dict, responses: list[str]) -> ExampleRecord:
    return score_prediction(example["id"], responses[0].strip(), example["summary"])


def score_prediction(example_id: str, prediction: str, reference: str) -> ExampleRecord:
    scores = {**rouge_f1(prediction, reference), "bleu_statistics": bleu_statistics(prediction, reference)}
    return ExampleRecord(example_id, prediction, reference, scores)


def metric_statistics(task: "TaskSpec", records: list[ExampleRecord]) -> tuple[np.ndarray, dict[str, Statistic]]:
    """Rows [ROUGE F-measures, BLEU statistics] per example; ROUGE is a column mean (0-1), BLEU
    is corpus BLEU (0-100, sacrebleu's scale) from the summed statistics."""
    rows = np.array([[r.scores[name] for name in ROUGE_TYPES] + list(r.scores["bleu_statistics"])
                     for r in records], dtype=float)
    statistics = {name: mean_statistic(column) for column, name in enumerate(ROUGE_TYPES)}
    statistics["bleu"] = _corpus_bleu
    return rows, {name: statistics[name] for name in task.metrics}


def aggregate(task: "TaskSpec", records: list[ExampleRecord]) -> dict[str, Metric]:
    """Each of the task's metrics with its bootstrap interval."""
    return bootstrap_metrics(*metric_statistics(task, records))


def _corpus_bleu(rows: np.ndarray) -> float:
    return corpus_bleu_from_statistics(rows[:, len(ROUGE_TYPES):].sum(axis=0))


def rescore_record(task: "TaskSpec", record: ExampleRecord) -> ExampleRecord:
    return score_prediction(record.id, record.prediction, record.reference)


def scoring_settings(task: "TaskSpec") -> dict:
    return {"rouge": "rouge-score, use_stemmer=True, F-measure averaged over examples",
            "bleu_signature": bleu_signature()}
