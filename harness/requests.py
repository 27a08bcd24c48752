"""The engine's three request types and its scoring result: plain data, no torch.

Tasks build these and reports read what comes back, so they live apart from the engine: a room
that only builds or reads requests (suite validation, `compare`) never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# How an engine reports each generated token as it is decoded: (request index, token id).
TokenCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class LoglikelihoodRequest:
    context: str
    continuation: str


@dataclass(frozen=True)
class RollingRequest:
    text: str


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 64


@dataclass(frozen=True)
class Loglikelihood:
    """Sum of natural-log probabilities of the scored tokens, whether greedy decoding yields them."""

    logprob: float
    is_greedy: bool
    n_tokens: int


class FailedGeneration(str):
    """The empty text an engine answers for a generation request that failed (an endpoint timed out).

    It is missing data, not a wrong answer: `evaluate_task` leaves its example out of the metrics
    and names it, where a plain "" would be scored as an answer.
    """


FAILED_GENERATION = FailedGeneration("")


def is_failed_response(response) -> bool:
    """Whether an engine's response stands for a failed request (a FailedGeneration, a NaN log-likelihood)."""
    if isinstance(response, FailedGeneration):
        return True
    return isinstance(response, Loglikelihood) and math.isnan(response.logprob)
