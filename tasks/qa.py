"""Question answering: generate an answer, score it by SQuAD v1.1 exact match and token F1.

Closed-book by default; a template may include `{context}` for extractive QA. An example may list
several acceptable answers: the prediction is scored against the best-matching one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from harness.requests import GenerationRequest
from tasks.metrics import answer_containment, exact_match, token_f1
from tasks.prompts import generation_requests, render
from tasks.records import ExampleRecord
from tasks.stats import Metric, Statistic, bootstrap_metrics, mean_statistic

if TYPE_CHECKING:
    from tasks.suite import TaskSpec

REQUIRED_FIELDS = ("question", "answers")
DEFAULT_TEMPLATE = "Question: {question}\nAnswer:"
DEFAULT_GENERATION = {"max_new_tokens": 32, "stop": ["\n"]}
TAKES_FEWSHOT = True
METRICS = ("exact_match", "f1", "answer_containment")


def check_example(task: "TaskSpec", example: dict) -> list[tuple[str, str]]:
    answers = example.get("answers")
    if isinstance(answers, str):
        return [("answers", "expected a list of answer strings, got one string (wrap it in [ ])")]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        return [("answers", "expected a non-empty list of non-empty strings")]
    if not isinstance(example.get("question"), str):
        return [("question", "expected a string")]
    return []


def rag_query(example: dict) -> str:
    return example["question"]


def target(task: "TaskSpec", example: dict) -> str:
    return " " + example["answers"][0]


def training_pair(task: "TaskSpec", example: dict) -> tuple[str, str]:
    return render(task.template, example), target(task, example)


def requests_for_prompt(task: "TaskSpec", example: dict, prompt: str) -> list[GenerationRequest]:
    return generation_requests(task, prompt)



def score(task: "TaskSpec", example: dict, responses: list[str]) -> ExampleRecord:
    return score_prediction(example["id"], responses[0].strip(), list(example["answers"]))


def score_prediction(example_id: str, prediction: str, answers: list[str]) -> ExampleRecord:
    scores = {"exact_match": exact_match(prediction, answers), "f1": token_f1(prediction, answers),
              "answer_containment": answer_containment(prediction, answers)}
    return ExampleRecord(example_id, prediction, answers, scores)


def metric_statistics(task: "TaskSpec", records: list[ExampleRecord]) -> tuple[np.ndarray, dict[str, Statistic]]:
    """Rows [exact_match, f1, answer_containment] per example; each metric is a column mean (0-1).

    Results written before answer_containment existed lack it: NaN, and the task's metrics do not ask for it.
    """
    rows = np.array([[r.scores["exact_match"], r.scores["f1"], r.scores.get("answer_containment", np.nan)]
                     for r in records], dtype=float)
    statistics = {"exact_match": mean_statistic(0), "f1": mean_statistic(1), "answer_containment": mean_statistic(2)}
    return rows, {name: statistics[name] for name in task.metrics}


def aggregate(task: "TaskSpec", records: list[ExampleRecord]) -> dict[str, Metric]:
    """Each of the task's metrics with its bootstrap interval."""
    return bootstrap_metrics(*metric_statistics(task, records))


def rescore_record(task: "TaskSpec", record: ExampleRecord) -> ExampleRecord:
    """Scores recomputed from a stored prediction and reference."""
    return score_prediction(record.id, record.prediction, record.reference)


def scoring_settings(task: "TaskSpec") -> dict:
    return {"normalization": "SQuAD v1.1 normalize_answer", "references": "max over answers",
            "answer_containment": "a normalised answer appears in the normalised prediction as whole tokens"}

