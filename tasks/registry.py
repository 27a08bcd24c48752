"""Task type name -> the module implementing it.

Every task type module provides the same module-level functions, so an evaluation and a rescore
read the same way whatever the type: `check_example`, `rag_query`, `target`, `training_pair`,
`requests_for_prompt`, `score`, `metric_statistics` (per-example rows and each
metric's statistic over them, for bootstraps and paired comparisons), `aggregate`, `rescore_record`,
`scoring_settings`, and the constants `REQUIRED_FIELDS`, `DEFAULT_TEMPLATE`, `DEFAULT_GENERATION`
(None for log-likelihood types), `TAKES_FEWSHOT`, `METRICS`.
"""

from __future__ import annotations

from types import ModuleType

from tasks import classification, multiple_choice, ner, perplexity, qa, summarization

TASK_TYPES: dict[str, ModuleType] = {
    "qa": qa,
    "ner": ner,
    "classification": classification,
    "multiple_choice": multiple_choice,
    "summarization": summarization,
    "perplexity": perplexity,
}


def task_module(type_name: str) -> ModuleType:
    """The module of a task type; suite validation guarantees the name is known."""
    return TASK_TYPES[type_name]
