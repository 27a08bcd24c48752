"""A task spec: one task of a suite with every setting resolved, and its examples.

Its own module, below everything that reads it — the suite loader builds it, task types score it,
prompts render it, fingerprints hash its files, pairing rebuilds it from a result file — so none of
those has to import another to name the type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_FEWSHOT_SEPARATOR = "\n\n"


@dataclass
class TaskSpec:
    """One task of a suite with every setting resolved (defaults filled in) and its examples."""

    name: str
    type: str
    template: str
    data: dict[str, Path]
    examples: dict[str, list[dict]] = field(repr=False)
    num_fewshot: int = 0
    metrics: tuple[str, ...] = ()
    generation: dict | None = None
    labels: dict[str, str] | tuple[str, ...] | None = None
    chat: bool = False
    fewshot_separator: str = DEFAULT_FEWSHOT_SEPARATOR
    description: str = ""
    fingerprint: str = ""
    rag: str = "off"                  # what retrieval may show its examples: tasks.rag_policy
    primary_metric: str | None = None  # what `compare --primary-only` gates (None: the headline rule)

    def settings(self) -> dict:
        """The effective settings, as `suite show` prints them and result files record them."""
        labels = dict(self.labels) if isinstance(self.labels, dict) else self.labels and list(self.labels)
        return {"type": self.type, "template": self.template, "num_fewshot": self.num_fewshot,
                "fewshot_separator": self.fewshot_separator, "metrics": list(self.metrics),
                "primary_metric": self.primary_metric,
                "generation": self.generation, "labels": labels, "chat": self.chat, "rag": self.rag,
                "splits": {split: len(rows) for split, rows in self.examples.items()}}
