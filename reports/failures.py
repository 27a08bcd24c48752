"""Failures a report flags instead of ranking: training that did not converge, degenerate output.

A configuration any of whose artifacts did not converge (the `convergence` block the tuning room
writes into an artifact's cost: dev loss ended above where it started, a student far worse than
its teacher, …) is shown with its dev-loss figures and the reason, and is never recommended nor
marked best. Degenerate output — empty predictions, repetition loops, NER output its parser cannot
read (`tasks.degenerate`) — is counted per configuration and task; a share above
DEGENERATE_THRESHOLD is called out in the report's text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from reports.costs import training_blocks
from reports.formatting import format_value
from tasks import ner
from tasks.degenerate import (
    EMPTY,
    LOOP,
    UNPARSEABLE,
    classify_entity_output,
    classify_text,
)
from tasks.registry import task_module

DEGENERATE_THRESHOLD = 0.25
NOT_CONVERGED = "did not converge at this budget"


@dataclass
class ConvergenceFailure:
    """An artifact whose training did not converge, with its dev-loss figures."""

    artifact: str
    purpose: str | None
    reason: str
    dev_loss_before: float | None
    dev_loss_best: float | None
    dev_loss_final: float | None

    def sentence(self) -> str:
        name = self.artifact if self.purpose in (None, self.artifact) else f"{self.artifact} ({self.purpose})"
        losses = " → ".join(f"{label} {format_value(value)}" for label, value in
                            (("before", self.dev_loss_before), ("best", self.dev_loss_best),
                             ("final", self.dev_loss_final)))
        return f"{name} {NOT_CONVERGED}: dev loss {losses}" + (f"; {self.reason}" if self.reason else "")


def convergence_failures(results: list) -> list[ConvergenceFailure]:
    """The artifacts of one configuration (its `ResultFile`s) recorded as not converged.

    Results written before artifacts recorded convergence have nothing to flag.
    """
    failures = []
    for name, block in (training_blocks(results) or {}).items():
        convergence = block.get("convergence")
        if isinstance(convergence, dict) and convergence.get("converged") is False:
            failures.append(ConvergenceFailure(
                name, block.get("purpose"), str(convergence.get("reason") or ""),
                *(_loss(convergence.get(key)) for key in ("dev_loss_before", "dev_loss_best", "dev_loss_final"))))
    return failures


def _loss(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class OutputShares:
    """Shares of one configuration's predictions on one task that are degenerate."""

    n: int
    empty: float
    loop: float
    unparseable: float | None  # None: the task's output has no format to parse (only NER has one)

    def above_threshold(self) -> dict[str, float]:
        shares = {EMPTY: self.empty, LOOP: self.loop, UNPARSEABLE: self.unparseable}
        return {kind: share for kind, share in shares.items() if share is not None and share > DEGENERATE_THRESHOLD}


def output_shares(result) -> OutputShares | None:
    """Degenerate-output shares of a result file; None for tasks scored without generating text."""
    if task_module(result.task_type).DEFAULT_GENERATION is None or not result.examples:
        return None
    is_ner = result.task_type == "ner"
    labels = result.settings.get("labels") or []
    verdicts = Counter(_entity_verdict(example.get("prediction"), labels) if is_ner
                       else classify_text(_text(example.get("prediction"))) for example in result.examples)
    n = len(result.examples)
    return OutputShares(n, verdicts[EMPTY] / n, verdicts[LOOP] / n, verdicts[UNPARSEABLE] / n if is_ner else None)


def _text(prediction) -> str | None:
    return prediction if isinstance(prediction, str) else None


def _entity_verdict(prediction, labels) -> str:
    # The parser records no failure per example, so its reading of the stored output is redone
    # here; offsets do not matter for parseability, hence no example text.
    output = _text(prediction.get("output")) if isinstance(prediction, dict) else None
    types = [entity["type"] for entity in ner.parse_entities(output, "", labels)] if output else []
    return classify_entity_output(output, types, labels)


def degenerate_callouts(shares: dict[str, dict[str, OutputShares]]) -> list[str]:
    """One sentence per (task, configuration) with a degenerate share above the threshold."""
    lines = []
    for task, by_configuration in shares.items():
        for configuration, task_shares in by_configuration.items():
            flagged = task_shares.above_threshold()
            if flagged:
                kinds = ", ".join(f"{share:.0%} {kind}" for kind, share in flagged.items())
                lines.append(f"{task}: {configuration}'s output is degenerate ({kinds} of {task_shares.n} "
                             f"predictions; threshold {DEGENERATE_THRESHOLD:.0%}) — its figures measure that failure")
    return lines
