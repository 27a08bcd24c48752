"""The served model: one thread drives the engine, requests wait and run together, tokens stream back.

The engine is not thread-safe, so one thread drives it: generation requests that arrive while it is
busy wait and then run together as one `engine.generate` batch (the engine batches them by stop
strings and budget, as in evaluation); prompt scoring for `logprobs` takes the same lock. Each
token the engine decodes goes to the callback of the request it belongs to, which is how a
streamed request sends text before its batch is done; it is also where a batch stops early: once
every request in it has been abandoned by its client, or the server has stopped generating. A
batch that fails (or gets fewer answers than it asked) fails its own requests; the thread goes on.
Requests count as in flight while they wait. Retrieval for `+rag` uses the prompt (or the last user
message) as its query, with no per-task exclusions — the server does not know the task.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property

from harness.requests import GenerationRequest, TokenCallback


class Abandoned(Exception):
    """The client went away before its answer: its generation stopped (or never started)."""


class ShuttingDown(Exception):
    """The server stopped generating: its drain deadline passed with the request unanswered."""


@dataclass(frozen=True)
class ServingLimits:
    """What one server takes: beyond each limit a request is refused, the limit named."""

    max_prompts: int = 64  # prompts in one completions request
    max_body_bytes: int = 4 * 1024 * 1024
    max_concurrent: int = 64  # requests in flight, waiting ones included: the next is answered 429
    drain_seconds: float = 30.0  # on SIGTERM/SIGINT, how long open requests have before generation stops


MAX_BATCHED_REQUESTS = 16  # the engine's CPU generation batch


@dataclass
class ServedModel:
    """The engine behind the server, its retrieval (for `+rag`), what it is, and the limits it is served with."""

    name: str
    engine: object
    augmenter: object | None = None
    about: dict = field(default_factory=dict)  # run, configuration, fingerprints: shown on /v1/models
    limits: ServingLimits = field(default_factory=ServingLimits)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _waiting: queue.Queue = field(default_factory=queue.Queue)
    _worker: threading.Thread | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    @cached_property
    def eos_token_ids(self) -> set[int]:
        """The tokens that end an answer: they are part of it, as the model generated them."""
        from engines.greedy import eos_token_ids

        return eos_token_ids(getattr(self.engine, "model", None), self.engine.tokenizer)

    def generate(self, requests: list[GenerationRequest], on_token: TokenCallback | None = None,
                 abandoned: threading.Event | None = None) -> list[str]:
        """engine.generate(requests), batched with whatever other requests are waiting.

        `on_token(index into requests, token)` hears each token as the engine decodes it (streaming).
        Once `abandoned` is set the request is not started, and its batch stops at the next token if no
        request in it is still wanted (Abandoned); after `stop_generating`, ShuttingDown.
        """
        if self._stopped.is_set():
            raise ShuttingDown()
        if self._worker is None:
            with self.lock:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._generate_waiting, daemon=True,
                                                    name="domainbench-generate")
                    self._worker.start()
        waiting = _Waiting(requests, Future(), on_token, abandoned or threading.Event())
        self._waiting.put(waiting)
        return waiting.answer.result()

    def stop_generating(self) -> None:
        """Stop the batch being generated at its next token, and every waiting request: they end in ShuttingDown."""
        self._stopped.set()

    def _generate_waiting(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < MAX_BATCHED_REQUESTS and not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
            wanted = [waiting for waiting in batch if not _ended(waiting, self._stopped)]
            if wanted:
                self._answer(wanted)

    def _answer(self, batch: list[_Waiting]) -> None:
        """One engine.generate for the batch; a failure (or a short answer) fails its requests, not the worker."""
        requests = [request for waiting in batch for request in waiting.requests]
        try:
            with self.lock:
                texts = list(self.engine.generate(requests, on_token=self._token_routing(batch)))
            if len(texts) != len(requests):
                raise RuntimeError(f"the engine answered {len(texts)} of {len(requests)} generation requests")
        except Exception as exc:  # noqa: BLE001 — each waiting request gets the failure to answer with
            for waiting in batch:
                waiting.answer.set_exception(exc)
            return
        done = 0
        for waiting in batch:
            waiting.answer.set_result(texts[done:done + len(waiting.requests)])
            done += len(waiting.requests)

    def _token_routing(self, batch: list[_Waiting]) -> TokenCallback:
        """engine.generate's `on_token`: each token to its own asker's callback; it stops the batch (by raising)
        once the server stops generating or every asker has gone."""
        owners = [(waiting, local) for waiting in batch for local in range(len(waiting.requests))]

        def route(index: int, token: int) -> None:
            if self._stopped.is_set():
                raise ShuttingDown()
            if all(waiting.abandoned.is_set() for waiting in batch):
                raise Abandoned()
            waiting, local = owners[index]
            if waiting.on_token is not None:
                waiting.on_token(local, token)
        return route


@dataclass
class _Waiting:
    """Generation requests waiting for the engine, with where their answer and tokens go."""

    requests: list[GenerationRequest]
    answer: Future
    on_token: TokenCallback | None
    abandoned: threading.Event


def _ended(waiting: _Waiting, stopped: threading.Event) -> bool:
    """Whether a waiting request is over before it started (answered with why)."""
    if stopped.is_set():
        waiting.answer.set_exception(ShuttingDown())
    elif waiting.abandoned.is_set():
        waiting.answer.set_exception(Abandoned())
    else:
        return False
    return True
