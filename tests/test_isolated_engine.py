"""IsolatedEngine: an engine in a child process answers as it would in ours, and its crash is one error here."""

from __future__ import annotations

import ctypes
import os
import signal

import pytest

from engines.isolated import EngineCrashed, IsolatedEngine
from harness.errors import DomainbenchError
from harness.requests import GenerationRequest, Loglikelihood, LoglikelihoodRequest


class PlantedEngine:
    """Scores a continuation by its length; generates the prompt back, streaming each character."""

    def __init__(self, *, fault: str | None = None):
        from harness.tiny import build_tiny_tokenizer

        if fault == "at load":
            raise DomainbenchError("model planted.gguf: no such GGUF file")
        self.fault = fault
        self.tokenizer = build_tiny_tokenizer()
        self.prefix_token_id, self.max_length, self.device, self.dtype = 0, 64, "cpu", "Q4_1"
        self.progress = True
        self.tokens_processed = 0

    def loglikelihood(self, requests):
        if self.fault == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.fault == "null pointer":
            ctypes.string_at(0)  # a native read of address 0, as a bad kernel would make
        if self.fault == "bug":
            raise KeyError("a bug in the engine")
        self.tokens_processed += len(requests)
        return [Loglikelihood(-float(len(r.continuation)), self.progress, len(r.continuation)) for r in requests]

    def generate(self, requests, *, on_token=None):
        for index, request in enumerate(requests):
            for character in request.prompt:
                if on_token is not None:
                    on_token(index, ord(character))
        return [request.prompt for request in requests]


REQUESTS = [LoglikelihoodRequest("open", " the file"), LoglikelihoodRequest("close", " it")]


def test_answers_come_back_as_the_engine_gives_them():
    engine = IsolatedEngine(PlantedEngine, name="planted")
    try:
        assert (engine.max_length, engine.device, engine.dtype, engine.engine_class) == (64, "cpu", "Q4_1",
                                                                                          "PlantedEngine")
        assert engine.loglikelihood(REQUESTS) == [Loglikelihood(-9.0, True, 9), Loglikelihood(-3.0, True, 3)]
        assert engine.tokens_processed == 2
        engine.progress = False  # reaches the engine itself
        assert engine.loglikelihood(REQUESTS[:1])[0].is_greedy is False
        heard = []
        assert engine.generate([GenerationRequest("ab"), GenerationRequest("c")],
                               on_token=lambda index, token: heard.append((index, chr(token)))) == ["ab", "c"]
        assert heard == [(0, "a"), (0, "b"), (1, "c")]
        assert engine.chat_prompt("hi")  # tokenizer-side helpers run here, on the engine's tokenizer
        assert engine.peak_memory()[0] > 0
    finally:
        engine.close()
    assert not engine._process.is_alive()


def test_errors_in_the_engine_are_raised_here_with_their_type():
    with pytest.raises(DomainbenchError, match="no such GGUF file"):
        IsolatedEngine(PlantedEngine, name="planted", fault="at load")
    engine = IsolatedEngine(PlantedEngine, name="planted", fault="bug")
    with pytest.raises(KeyError, match="a bug in the engine") as raised:
        engine.loglikelihood(REQUESTS)
    assert "in the engine's process" in "".join(raised.value.__notes__)
    assert engine.generate([GenerationRequest("x")]) == ["x"]  # the engine lives on after an exception
    engine.close()


@pytest.mark.parametrize("fault", ["segfault", "null pointer"])
def test_a_native_crash_is_one_line_naming_the_signal_and_the_engine(fault):
    engine = IsolatedEngine(PlantedEngine, name="llama.cpp", fault=fault)
    with pytest.raises(EngineCrashed, match=r"^engine crashed: signal 11 \(SIGSEGV\) in llama.cpp$"):
        engine.loglikelihood(REQUESTS)
    with pytest.raises(EngineCrashed, match="signal 11"):  # and stays crashed
        engine.generate([GenerationRequest("x")])
    engine.close()
