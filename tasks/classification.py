"""Classification by log-likelihood: the label whose verbaliser the model finds most likely wins.

This is lm-evaluation-harness's multiple-choice scoring: `accuracy` takes the argmax of the summed
log-probabilities, `accuracy_norm` of the log-probabilities divided by the verbaliser's length in
characters (which removes the bias towards short verbalisers). Macro-F1 is over the argmax
predictions, averaging over the labels present in the gold or predicted labels (scikit-learn's
`f1_score(average="macro")`).
"""

from __future__ import annotations

import numpy as np

from harness.requests import LoglikelihoodRequest
from stats.statistic import Statistic, SumStatistic, mean_of
from tasks.metrics import precision_recall_f1_arrays
from tasks.records import ExampleRecord
from tasks.spec import TaskSpec
from tasks.task_type import SHARE, bootstrap_aggregate, template_training_pair

REQUIRED_FIELDS = ("text", "label")
DEFAULT_TEMPLATE = "{text}\nLabel:"
DEFAULT_GENERATION = None
TAKES_FEWSHOT = True
METRICS = {"accuracy": SHARE, "accuracy_norm": SHARE, "macro_f1": SHARE}
HEADLINE_METRICS = ("accuracy",)
DEFAULT_RAG = "exclude-source"  # the label comes with the source page (its section)
QUOTABLE_REFERENCE = None
FEEDBACK_INPUT = "text"

# Rows: correct, correct_norm, then tp, fp, fn of each label in turn (macro F1 from summed counts).
_CORRECT, _CORRECT_NORM, _FIRST_COUNT = range(3)


def check_example(task: TaskSpec, example: dict) -> list[tuple[str, str]]:
    if not isinstance(example.get("text"), str):
        return [("text", "expected a string")]
    if str(example.get("label")) not in task.labels:
        return [("label", f"{example.get('label')!r} is not in the label set ({', '.join(task.labels)})")]
    return []


def rag_query(example: dict) -> str:
    return example["text"]


def target(task: TaskSpec, example: dict) -> str:
    return task.labels[str(example["label"])]


training_pair = template_training_pair(target)


def requests_for_prompt(task: TaskSpec, example: dict, prompt: str) -> list[LoglikelihoodRequest]:
    """One request per label, in the label set's order."""
    return [LoglikelihoodRequest(prompt, verbaliser) for verbaliser in task.labels.values()]


def score(task: TaskSpec, example: dict, responses) -> ExampleRecord:
    logprobs = {label: response.logprob for label, response in zip(task.labels, responses)}
    return score_prediction(task, example["id"], logprobs, str(example["label"]))


def score_prediction(task: TaskSpec, example_id: str, logprobs: dict[str, float], label: str) -> ExampleRecord:
    labels = list(task.labels)
    values = np.array([logprobs[key] for key in labels])
    lengths = np.array([len(verbaliser) for verbaliser in task.labels.values()], dtype=float)
    predicted = labels[int(np.argmax(values))]
    predicted_norm = labels[int(np.argmax(values / lengths))]
    scores = {"logprobs": logprobs, "correct": float(predicted == label),
              "predicted_norm": predicted_norm, "correct_norm": float(predicted_norm == label)}
    return ExampleRecord(example_id, predicted, label, scores)


def metric_statistics(task: TaskSpec, records: list[ExampleRecord]) -> tuple[np.ndarray, dict[str, Statistic]]:
    """Rows [correct, correct_norm, then tp, fp, fn of each label] per example."""
    labels = list(task.labels)
    rows = np.array([[r.scores["correct"], r.scores["correct_norm"], *_label_counts(labels, r)] for r in records],
                    dtype=float)
    statistics = {"accuracy": mean_of(_CORRECT), "accuracy_norm": mean_of(_CORRECT_NORM),
                  "macro_f1": SumStatistic(_macro_f1)}
    return rows, {name: statistics[name] for name in task.metrics}


aggregate = bootstrap_aggregate(metric_statistics)


def _label_counts(labels: list[str], record: ExampleRecord) -> list[float]:
    """This example's [tp, fp, fn] for each label in turn (one of them a hit, or a miss and a false alarm)."""
    counts = []
    for label in labels:
        gold, predicted = record.reference == label, record.prediction == label
        counts += [float(gold and predicted), float(predicted and not gold), float(gold and not predicted)]
    return counts


def _macro_f1(sums: np.ndarray, n: int) -> np.ndarray:
    """Mean F1 over the labels that occur as gold or prediction (as scikit-learn's macro average does)."""
    counts = sums[..., _FIRST_COUNT:].reshape(*sums.shape[:-1], -1, 3)
    f1 = precision_recall_f1_arrays(counts[..., 0], counts[..., 1], counts[..., 2])[2]
    present = counts.sum(axis=-1) > 0
    return (f1 * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def rescore_record(task: TaskSpec, record: ExampleRecord) -> ExampleRecord:
    """Predictions recomputed from the stored per-label log-likelihoods."""
    return score_prediction(task, record.id, record.scores["logprobs"], record.reference)


def scoring_settings(task: TaskSpec) -> dict:
    return {"scoring": "log-likelihood of each label's verbaliser", "labels": dict(task.labels),
            "accuracy_norm": "log-likelihood per character of the verbaliser",
            "macro_f1": "over labels present in gold or predictions"}


def example_from_correction(task: TaskSpec, text: str, correction: str) -> dict:
    """The label a correction names, by its name or its verbaliser (`3` or `library function`), case aside."""
    wanted = correction.strip().lower()
    for label, verbaliser in task.labels.items():
        if wanted in (str(label).lower(), verbaliser.strip().lower()):
            return {"text": text, "label": label}
    raise ValueError(f"{correction.strip()!r} is not one of the task's labels ({', '.join(task.labels)})")
