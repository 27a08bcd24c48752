"""The per-example record every task type produces: what was predicted and how it scored."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ExampleRecord:
    """One example's outcome.

    `scores` holds the per-example sufficient statistics the task's metrics are computed from
    (correctness, tp/fp/fn per type, log-likelihood and counts, BLEU n-gram matches), so metrics
    and their intervals can be recomputed from a result file without the model.
    """

    id: str
    prediction: Any
    reference: Any
    scores: dict[str, Any]
    retrieved: list[dict] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        if record["retrieved"] is None:
            del record["retrieved"]
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "ExampleRecord":
        return cls(id=record["id"], prediction=record.get("prediction"), reference=record.get("reference"),
                   scores=dict(record.get("scores") or {}), retrieved=record.get("retrieved"))
