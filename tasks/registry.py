"""Task type name -> the module implementing it.

Every task type module implements `tasks.task_type.TaskType` (functions and constants), so an
evaluation and a rescore read the same way whatever the type.
"""

from __future__ import annotations

from tasks import classification, multiple_choice, ner, perplexity, qa, summarization
from tasks.task_type import TaskType

TASK_TYPES: dict[str, TaskType] = {
    "qa": qa,
    "ner": ner,
    "classification": classification,
    "multiple_choice": multiple_choice,
    "summarization": summarization,
    "perplexity": perplexity,
}


def task_module(type_name: str) -> TaskType:
    """The module of a task type; suite validation guarantees the name is known."""
    return TASK_TYPES[type_name]
