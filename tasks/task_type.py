"""The interface every task type module implements, as a `typing.Protocol` a type checker holds them to.

A task type is a module (tasks/qa.py, tasks/ner.py, …) rather than a class: its functions are
plain, its constants are data, and a rescore needs no instance. The constants are the type's
defaults (template, generation, rag mode) and what each of its metrics means; the suite loader,
tasks/rag_policy.py and tasks/pairing.py read them through the registry. Modules satisfy a
Protocol structurally (mypy checks `TASK_TYPES: dict[str, TaskType]`); `missing_members` is the
same check at run time, so a new type that forgets a function fails its test, not a user's run.

Members several types implement alike are written once below; a type binds them to its own
pieces (`aggregate = bootstrap_aggregate(metric_statistics)`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from harness.requests import GenerationRequest
from stats.intervals import bootstrap_metrics
from tasks.prompts import render
from tasks.spec import TaskSpec

if TYPE_CHECKING:
    import numpy as np

    from stats.intervals import Metric
    from stats.statistic import Statistic
    from tasks.records import ExampleRecord


@dataclass(frozen=True)
class MetricSense:
    """What "better" and "a drop of δ" mean for one metric: its direction and its range."""

    higher_is_better: bool = True
    scale: float | None = 1.0  # the range a drop is measured against; None: no upper end


SHARE = MetricSense()                                     # 0–1, grows with quality
PERCENT = MetricSense(scale=100.0)                        # 0–100 (sacrebleu's BLEU), grows with quality
LOSS = MetricSense(higher_is_better=False, scale=None)    # unbounded, the smaller the better (perplexity)


class TaskType(Protocol):
    REQUIRED_FIELDS: tuple[str, ...]
    DEFAULT_TEMPLATE: str
    DEFAULT_GENERATION: dict | None        # None: a log-likelihood type
    TAKES_FEWSHOT: bool
    METRICS: Mapping[str, MetricSense]     # every metric a task may ask for, in the default order
    HEADLINE_METRICS: tuple[str, ...]      # what a recommendation is made on: the first of these a result reports
    DEFAULT_RAG: str                       # what retrieval may show an example when suite.yaml says nothing
    QUOTABLE_REFERENCE: str | None         # the field of a free-text label a passage could quote (None: no such label)
    FEEDBACK_INPUT: str | None             # the field a served user's text fills, for corrections (None: takes none)

    def check_example(self, task: TaskSpec, example: dict) -> list[tuple[str, str]]:
        """(field, problem) pairs of an example this type cannot score; [] when it is fine."""

    def rag_query(self, example: dict) -> str:
        """What retrieval searches for on this example's behalf."""

    def target(self, task: TaskSpec, example: dict) -> str:
        """The gold continuation a few-shot exemplar shows."""

    def training_pair(self, task: TaskSpec, example: dict) -> tuple[str, str]:
        """(prompt, completion) for supervised tuning on a train-split example."""

    def requests_for_prompt(self, task: TaskSpec, example: dict, prompt: str) -> list[Any]:
        """The engine requests (harness/requests.py) of one example with its finished prompt."""

    def score(self, task: TaskSpec, example: dict, responses: list[Any]) -> ExampleRecord:
        """One example's record: prediction, reference and per-example scores."""

    def metric_statistics(self, task: TaskSpec, records: list[ExampleRecord]) -> tuple[np.ndarray, dict[str, Statistic]]:
        """Per-example rows and each metric's statistic over them (bootstraps and paired tests use both)."""

    def aggregate(self, task: TaskSpec, records: list[ExampleRecord]) -> dict[str, Metric]:
        """Each of the task's metrics with its bootstrap interval."""

    def rescore_record(self, task: TaskSpec, record: ExampleRecord) -> ExampleRecord:
        """Scores recomputed from a stored prediction and reference (no model)."""

    def scoring_settings(self, task: TaskSpec) -> dict:
        """How this type scores, recorded in every result file."""

    def example_from_correction(self, task: TaskSpec, text: str, correction: str) -> dict:
        """A test example's fields from a user's `text` (its FEEDBACK_INPUT) and the `correction` they gave as
        its gold; ValueError saying why when the correction cannot be this type's gold."""


def missing_members(module) -> list[str]:
    """The members of TaskType that `module` lacks (or has as the wrong kind: a constant for a function)."""
    missing = []
    for name in TaskType.__annotations__:
        if not hasattr(module, name):
            missing.append(name)
    for name, member in vars(TaskType).items():
        if callable(member) and not name.startswith("_") and not callable(getattr(module, name, None)):
            missing.append(name)
    return missing


# ----- members several types share ------------------------------------------------------------

def nonempty_string_problems(example: dict, fields: tuple[str, ...]) -> list[tuple[str, str]]:
    """`check_example` of a type whose fields are all free text: each must be a non-empty string."""
    return [(name, "expected a non-empty string") for name in fields
            if not isinstance(example.get(name), str) or not example[name].strip()]


def generation_requests(task: TaskSpec, example: dict, prompt: str) -> list[GenerationRequest]:
    """`requests_for_prompt` of the generation types: one greedy generation with the task's stops and budget."""
    return [GenerationRequest(prompt, stop=tuple(task.generation["stop"]),
                              max_new_tokens=task.generation["max_new_tokens"])]


def template_training_pair(target: Callable[[TaskSpec, dict], str]) -> Callable[[TaskSpec, dict], tuple[str, str]]:
    """`training_pair` of a type trained on its evaluation prompt followed by the gold `target`."""
    def training_pair(task: TaskSpec, example: dict) -> tuple[str, str]:
        return render(task.template, example), target(task, example)
    return training_pair


def bootstrap_aggregate(metric_statistics: Callable[[TaskSpec, list[ExampleRecord]], tuple[np.ndarray, dict]]
                        ) -> Callable[[TaskSpec, list[ExampleRecord]], dict[str, Metric]]:
    """`aggregate`: each of the task's metrics from the type's `metric_statistics`, with its bootstrap interval."""
    def aggregate(task: TaskSpec, records: list[ExampleRecord]) -> dict[str, Metric]:
        return bootstrap_metrics(*metric_statistics(task, records))
    return aggregate


def takes_no_corrections(task: TaskSpec, text: str, correction: str) -> dict:
    """`example_from_correction` of a type whose gold a user's correction cannot give (FEEDBACK_INPUT None)."""
    raise ValueError(f"a {task.type} task's gold is not a user's correction")


def rescore_from_prediction(score_prediction: Callable[[str, Any, Any], ExampleRecord]
                            ) -> Callable[[TaskSpec, ExampleRecord], ExampleRecord]:
    """`rescore_record` of a type whose stored prediction and reference are all its scores need."""
    def rescore_record(task: TaskSpec, record: ExampleRecord) -> ExampleRecord:
        return score_prediction(record.id, record.prediction, record.reference)
    return rescore_record
