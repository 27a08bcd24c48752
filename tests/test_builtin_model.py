"""The real builtin model, offline: it loads from the wheel, generates sense and scores sensibly."""

from __future__ import annotations

import pytest

from engines.hf import HFEngine
from harness.models import load_model, resolve_model
from harness.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2-135m-instruct", device="cpu", dtype="float32")


def test_builtin_model_is_converted_once_and_cached(smollm2):
    assert resolve_model("smollm2-135m-instruct") == smollm2.path
    assert (smollm2.path / "model.safetensors").is_file()
    assert "quantization_config" not in (smollm2.path / "config.json").read_text()


def test_builtin_model_prefers_a_sentence_to_its_shuffled_words(smollm2):
    engine = HFEngine.from_loaded(smollm2, progress=False)
    sentence = "The cat sat on the mat because it was warm in the sun."
    shuffled = "warm mat sun. the The sat it on because was cat in the"
    real, scrambled = engine.loglikelihood_rolling([RollingRequest(sentence), RollingRequest(shuffled)])
    assert real.logprob > scrambled.logprob + 10


def test_builtin_model_answers_a_simple_question(smollm2):
    engine = HFEngine.from_loaded(smollm2, progress=False)
    prompt = engine.chat_prompt("What is the capital of France? Answer in one word.")
    answer = engine.generate([GenerationRequest(prompt, stop=("\n",), max_new_tokens=16)])[0]
    assert "paris" in answer.lower()
    capital = engine.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris"),
                                    LoglikelihoodRequest("The capital of France is", " Tokyo")])
    assert capital[0].logprob > capital[1].logprob
