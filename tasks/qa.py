"""Question answering: generate an answer, score it by SQuAD v1.1 exact match and token F1.

Closed-book by default; a template may include `{context}` for extractive QA. An example may list
several acceptable answers: the prediction is scored against the best-matching one.
"""

from __future__ import annotations

import numpy as np

from stats.statistic import Statistic, mean_of
from tasks.metrics import answer_containment, exact_match, token_f1
from tasks.records import ExampleRecord
from tasks.spec import TaskSpec
from tasks.task_type import (
    SHARE,
    bootstrap_aggregate,
    generation_requests,
    rescore_from_prediction,
    template_training_pair,
)

REQUIRED_FIELDS = ("question", "answers")
DEFAULT_TEMPLATE = "Question: {question}\nAnswer:"
DEFAULT_GENERATION = {"max_new_tokens": 32, "stop": ["\n"]}
TAKES_FEWSHOT = True
METRICS = {"exact_match": SHARE, "f1": SHARE, "answer_containment": SHARE}
HEADLINE_METRICS = ("f1", "exact_match")
DEFAULT_RAG = "on"  # knowledge QA: finding the page that holds the answer is the task
QUOTABLE_REFERENCE = None
FEEDBACK_INPUT = "question"


def check_example(task: TaskSpec, example: dict) -> list[tuple[str, str]]:
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


def target(task: TaskSpec, example: dict) -> str:
    return " " + example["answers"][0]


training_pair = template_training_pair(target)
requests_for_prompt = generation_requests


def score(task: TaskSpec, example: dict, responses: list[str]) -> ExampleRecord:
    return score_prediction(example["id"], responses[0].strip(), list(example["answers"]))


def score_prediction(example_id: str, prediction: str, answers: list[str]) -> ExampleRecord:
    scores = {"exact_match": exact_match(prediction, answers), "f1": token_f1(prediction, answers),
              "answer_containment": answer_containment(prediction, answers)}
    return ExampleRecord(example_id, prediction, answers, scores)


def metric_statistics(task: TaskSpec, records: list[ExampleRecord]) -> tuple[np.ndarray, dict[str, Statistic]]:
    """Rows [exact_match, f1, answer_containment] per example; each metric is a column mean (0-1).

    Results written before answer_containment existed lack it: NaN, and the task's metrics do not ask for it.
    """
    rows = np.array([[r.scores["exact_match"], r.scores["f1"], r.scores.get("answer_containment", np.nan)]
                     for r in records], dtype=float)
    statistics = {"exact_match": mean_of(0), "f1": mean_of(1), "answer_containment": mean_of(2)}
    return rows, {name: statistics[name] for name in task.metrics}


aggregate = bootstrap_aggregate(metric_statistics)
rescore_record = rescore_from_prediction(score_prediction)


def scoring_settings(task: TaskSpec) -> dict:
    return {"normalization": "SQuAD v1.1 normalize_answer", "references": "max over answers",
            "answer_containment": "a normalised answer appears in the normalised prediction as whole tokens"}


def example_from_correction(task: TaskSpec, text: str, correction: str) -> dict:
    return {"question": text, "answers": [correction]}
