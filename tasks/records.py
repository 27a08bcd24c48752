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
    # With retrieval, where the example names its source: {"gold": [doc ids], "k": k}, so
    # recall@k / MRR / nDCG@k can be recomputed from the stored chunks alone.
    retrieval_gold: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        for optional in ("retrieved", "retrieval_gold"):
            if record[optional] is None:
                del record[optional]
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "ExampleRecord":
        return cls(id=record["id"], prediction=record.get("prediction"), reference=record.get("reference"),
                   scores=dict(record.get("scores") or {}), retrieved=record.get("retrieved"),
                   retrieval_gold=record.get("retrieval_gold"))
