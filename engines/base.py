"""The Engine Protocol: what every engine offers, whatever runs the model.

Tasks, the runner, the server and the monitor speak to an engine only through this: three request
types (as in lm-evaluation-harness), results in request order, scores that do not depend on batch
size. Which engine runs a model spec is the registry's business (engines/registry.py).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from harness.requests import (
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    RollingRequest,
    TokenCallback,
)


@runtime_checkable
class Engine(Protocol):
    """One model behind the three request types.

    `tokenizer` is the model's Hugging Face tokenizer (None for an endpoint given none: prompts then
    go to the server as they are); `max_length` is the context in tokens; `tokens_processed` counts
    prompt and generated tokens since the engine opened (what tokens/s is computed from).
    `fingerprint` names what the answers come from, as its opener knows it: the weights' (a model
    dir's or a GGUF file's, `harness.models.model_fingerprint`), or the endpoint URL and the model
    it serves; None for an engine built around weights already in memory (a run records the
    fingerprints of its weights and adapter itself).
    """

    tokenizer: object | None
    max_length: int
    progress: bool
    fingerprint: str | None

    @property
    def tokens_processed(self) -> int: ...

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Log-probability of each continuation given its context, and whether it is the greedy one."""

    def loglikelihood_rolling(self, requests: list[RollingRequest]) -> list[Loglikelihood]:
        """Log-probability of each whole text, in windows of the context length."""

    def generate(self, requests: list[GenerationRequest], *, on_token: TokenCallback | None = None) -> list[str]:
        """Greedy answers, cut at their stop strings; `on_token(index, token id)` hears each token decoded."""

    def chat_prompt(self, user_text: str) -> str:
        """`user_text` as one user turn in the model's chat template (unchanged without one)."""

    def close(self) -> None:
        """Free what the engine holds (a process, a connection); the engine is not used after."""
