"""The interface every task type module implements, as a `typing.Protocol` a type checker holds them to.

A task type is a module (tasks/qa.py, tasks/ner.py, …) rather than a class: its functions are
plain, its constants are data, and a rescore needs no instance. Modules satisfy a Protocol
structurally (mypy checks `TASK_TYPES: dict[str, TaskType]`); `missing_members` is the same check
at run time, so a new type that forgets a function fails its test, not a user's run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from tasks.records import ExampleRecord
    from tasks.stats import Metric, Statistic
    from tasks.suite import TaskSpec


class TaskType(Protocol):
    REQUIRED_FIELDS: tuple[str, ...]
    DEFAULT_TEMPLATE: str
    DEFAULT_GENERATION: dict | None        # None: a log-likelihood type
    TAKES_FEWSHOT: bool
    METRICS: tuple[str, ...]

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
