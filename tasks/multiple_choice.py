"""Multiple choice by log-likelihood, each example with its own choices: cloze and known-item tasks.

An example gives a context `text`, its `choices` and the index of the right one (`answer`); an
optional `suffix` follows the choice — the rest of a cloze sentence after its masked term. Each
choice is scored as the log-likelihood of `choice + suffix` after the rendered prompt, so a cloze
compares whole sentences that differ only in the term. A choice is appended to the prompt as it is:
it carries the space it needs (" systemd"), as classification verbalisers do.

`accuracy` takes the argmax of the summed log-probabilities; `accuracy_norm` of the
log-probabilities divided by the continuation's length in characters (lm-evaluation-harness's
acc_norm, which removes the bias towards short choices).
"""

from __future__ import annotations

import numpy as np

from harness.requests import LoglikelihoodRequest
from stats.statistic import Statistic, mean_of
from tasks.records import ExampleRecord
from tasks.spec import TaskSpec
from tasks.task_type import SHARE, bootstrap_aggregate, takes_no_corrections, template_training_pair

REQUIRED_FIELDS = ("text", "choices", "answer")
DEFAULT_TEMPLATE = "{text}"
DEFAULT_GENERATION = None
TAKES_FEWSHOT = True
METRICS = {"accuracy": SHARE, "accuracy_norm": SHARE}
HEADLINE_METRICS = ("accuracy",)
DEFAULT_RAG = "exclude-source"  # the answer comes with the source document
QUOTABLE_REFERENCE = None
FEEDBACK_INPUT = None

_CORRECT, _CORRECT_NORM = range(2)


def check_example(task: TaskSpec, example: dict) -> list[tuple[str, str]]:
    if not isinstance(example.get("text"), str):
        return [("text", "expected a string")]
    choices = example.get("choices")
    if (not isinstance(choices, list) or len(choices) < 2
            or not all(isinstance(choice, str) and choice.strip() for choice in choices)):
        return [("choices", "expected a list of at least two non-empty strings")]
    if len(set(choices)) != len(choices):
        return [("choices", "expected distinct choices")]
    answer = example.get("answer")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        return [("answer", f"expected the index of the right choice, 0 to {len(choices) - 1}")]
    if not isinstance(example.get("suffix", ""), str):
        return [("suffix", "expected a string")]
    return []


def completed_text(example: dict) -> str:
    """The context with the right choice and the suffix: the text a leak would contain."""
    return example["text"] + example["choices"][example["answer"]] + example.get("suffix", "")


def rag_query(example: dict) -> str:
    return " ".join(part for part in (example["text"], example.get("suffix", "").strip()) if part)


def target(task: TaskSpec, example: dict) -> str:
    return example["choices"][example["answer"]] + example.get("suffix", "")


training_pair = template_training_pair(target)


def requests_for_prompt(task: TaskSpec, example: dict, prompt: str) -> list[LoglikelihoodRequest]:
    """One request per choice, in the example's order."""
    suffix = example.get("suffix", "")
    return [LoglikelihoodRequest(prompt, choice + suffix) for choice in example["choices"]]


def score(task: TaskSpec, example: dict, responses) -> ExampleRecord:
    suffix = example.get("suffix", "")
    lengths = [len(choice + suffix) for choice in example["choices"]]
    return score_prediction(example["id"], list(example["choices"]), [r.logprob for r in responses], lengths,
                            example["answer"])


def score_prediction(example_id: str, choices: list[str], logprobs: list[float], lengths: list[int],
                     answer: int) -> ExampleRecord:
    values = np.array(logprobs)
    predicted = int(np.argmax(values))
    predicted_norm = int(np.argmax(values / np.array(lengths, dtype=float)))
    scores = {"choices": choices, "logprobs": logprobs, "lengths": lengths, "answer": answer,
              "correct": float(predicted == answer), "predicted_norm": choices[predicted_norm],
              "correct_norm": float(predicted_norm == answer)}
    return ExampleRecord(example_id, choices[predicted], choices[answer], scores)


def metric_statistics(task: TaskSpec, records: list[ExampleRecord]) -> tuple[np.ndarray, dict[str, Statistic]]:
    """Rows [correct, correct_norm] per example."""
    rows = np.array([[r.scores["correct"], r.scores["correct_norm"]] for r in records], dtype=float)
    statistics = {"accuracy": mean_of(_CORRECT), "accuracy_norm": mean_of(_CORRECT_NORM)}
    return rows, {name: statistics[name] for name in task.metrics}


aggregate = bootstrap_aggregate(metric_statistics)


def rescore_record(task: TaskSpec, record: ExampleRecord) -> ExampleRecord:
    """Predictions recomputed from the stored per-choice log-likelihoods."""
    scores = record.scores
    return score_prediction(record.id, scores["choices"], scores["logprobs"], scores["lengths"], scores["answer"])


def scoring_settings(task: TaskSpec) -> dict:
    return {"scoring": "log-likelihood of each choice followed by the example's suffix",
            "accuracy_norm": "log-likelihood per character of choice + suffix"}


example_from_correction = takes_no_corrections  # a user's text alone is not an example of this type
