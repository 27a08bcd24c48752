"""LlamaCppEngine: the builtin GGUF file scored by llama.cpp agrees with the HF engine on its weights.

The reference is `HFEngine` in float32 on the dequantized model (what `resolve_model` converts the
same file to). llama.cpp computes Q4_1 matmuls against activations it quantizes to 8 bits and keeps
the KV cache in f16, so scores differ by a measured, small amount per token — not by bugs, which
show up as whole nats. Whatever decodes runs in an IsolatedEngine, as in a run: a fault in
llama.cpp's kernels fails that test, not the whole session.
"""

from __future__ import annotations

import random

import pytest

from engines.hf import HFEngine
from engines.isolated import IsolatedEngine
from engines.llama_cpp import LlamaCppEngine, portable_model_params
from engines.stops import cut_at_stop
from harness.errors import DomainbenchError
from harness.models import gguf_origin, load_model
from harness.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest

MAX_LENGTH = 128
# The builtin Q4_1 file against float32 HF on its dequantized weights, measured on this 2-core
# AMD EPYC: per token over 1524 man-page tokens, mean |Δ log p| 0.07 nats (p95 0.23, max 0.88,
# argmax agreeing on 96%); sum of |Δ| over requests / tokens here: 0.075 (loglikelihood), 0.017
# (rolling). The bound is twice that, for other CPUs' kernels; a real bug (a shifted position, a
# wrong prefix token, a lost layer) costs whole nats per token.
Q4_1_MEAN_TOKEN_TOLERANCE = 0.15

WORDS = ("the open system call file descriptor returns error errno pathname rename directory process "
         "signal memory mapping socket buffer read write flags mode").split()


def test_a_missing_gguf_file_is_a_user_error(tiny_tokenizer, tmp_path):
    with pytest.raises(DomainbenchError, match="no such GGUF file"):
        LlamaCppEngine(tmp_path / "absent.gguf", tiny_tokenizer)


def test_a_file_llama_cpp_cannot_load_is_a_user_error(tiny_tokenizer, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(DomainbenchError, match="cannot load"):
        LlamaCppEngine(broken, tiny_tokenizer)


@pytest.fixture(scope="module")
def hf_smollm2():
    return load_model("smollm2-135m-instruct", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def hf_engine(hf_smollm2):
    return HFEngine.from_loaded(hf_smollm2, max_length=MAX_LENGTH, progress=False)


@pytest.fixture(scope="module")
def gguf_engine(hf_smollm2):
    engine = IsolatedEngine(LlamaCppEngine, gguf_origin("smollm2-135m-instruct"), hf_smollm2.tokenizer,
                            name="llama.cpp", max_length=MAX_LENGTH, progress=False)
    yield engine
    engine.close()


SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}


@pytest.mark.parametrize("flags, repacked", [(SAPPHIRE_RAPIDS, False), ({"amx_tile"}, False),
                                             ({"avx2", "avx512f", "avx512_bf16"}, True), ({"avx2"}, True), (set(), True)])
def test_weights_are_not_repacked_on_an_amx_cpu_alone(monkeypatch, flags, repacked):
    import llama_cpp

    import harness.models as models

    monkeypatch.setattr(models, "cpu_flags", lambda: flags)
    assert portable_model_params(llama_cpp.llama_model_default_params()).use_extra_bufts is repacked


def llama_engine_on_an_amx_cpu(path, tokenizer, **kwargs):
    """LlamaCppEngine as it loads on an AMX CPU; an AssertionError unless it asks llama.cpp not to repack."""
    import llama_cpp

    import engines.llama_cpp as llama_engine
    import harness.models as models

    models.cpu_flags = lambda: SAPPHIRE_RAPIDS  # in the engine's own process, which ends with the test
    load = llama_cpp.llama_model_load_from_file

    def load_unrepacked(model_path, params):
        assert params.use_extra_bufts is False, "llama.cpp would repack the weights into its AMX buffer"
        return load(model_path, params)

    llama_cpp.llama_model_load_from_file = load_unrepacked
    return llama_engine.LlamaCppEngine(path, tokenizer, **kwargs)


@pytest.mark.slow
def test_on_an_amx_cpu_the_model_loads_unrepacked_and_decodes(hf_smollm2):
    engine = IsolatedEngine(llama_engine_on_an_amx_cpu, gguf_origin("smollm2-135m-instruct"), hf_smollm2.tokenizer,
                            name="llama.cpp", max_length=MAX_LENGTH, progress=False)
    try:
        (paris,) = engine.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])
        assert paris.is_greedy and paris.logprob > -1.0
        question = engine.chat_prompt("What is the capital of France? Answer in one word.")
        assert "paris" in engine.generate([GenerationRequest(question, max_new_tokens=8)])[0].lower()
    finally:
        engine.close()


@pytest.mark.slow
def test_the_llama_cpp_server_loads_models_as_the_engine_does(monkeypatch):
    import llama_cpp
    import llama_cpp.llama_cpp as bindings

    import harness.models as models
    from engines.llama_server import use_portable_model_params

    monkeypatch.setattr(bindings, "llama_model_default_params", bindings.llama_model_default_params)  # restored after
    monkeypatch.setattr(models, "cpu_flags", lambda: SAPPHIRE_RAPIDS)
    use_portable_model_params()
    served = llama_cpp.Llama(str(gguf_origin("smollm2-135m-instruct")), n_ctx=64, verbose=False)
    assert served.model_params.use_extra_bufts is False
    completion = served.create_completion("The capital of France is", max_tokens=2, temperature=0.0)
    assert "Paris" in completion["choices"][0]["text"]


def multiple_choice_requests(seed: int = 0) -> list[LoglikelihoodRequest]:
    rng = random.Random(seed)
    requests = []
    for _ in range(4):
        context = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) + " Answer:"
        requests += [LoglikelihoodRequest(context, f" {label}") for label in ("yes", "no", "maybe so")]
    requests.append(LoglikelihoodRequest("The capital of France is", " Paris"))
    requests.append(LoglikelihoodRequest("", "Hello world"))
    return requests


def mean_token_difference(ours, reference) -> float:
    assert [r.n_tokens for r in ours] == [r.n_tokens for r in reference]
    return sum(abs(a.logprob - b.logprob) for a, b in zip(ours, reference)) / sum(r.n_tokens for r in reference)


@pytest.mark.slow
def test_reports_the_file_type_and_device(gguf_engine):
    assert gguf_engine.dtype == "Q4_1"
    assert gguf_engine.device == "cpu"
    assert gguf_engine.max_length == MAX_LENGTH


@pytest.mark.slow
def test_loglikelihood_agrees_with_the_hf_engine_on_the_dequantized_weights(gguf_engine, hf_engine):
    requests = multiple_choice_requests()
    ours, reference = gguf_engine.loglikelihood(requests), hf_engine.loglikelihood(requests)
    assert mean_token_difference(ours, reference) < Q4_1_MEAN_TOKEN_TOLERANCE
    agreeing = sum(a.is_greedy == b.is_greedy for a, b in zip(ours, reference))
    assert agreeing >= len(requests) - 2  # a near-tie may flip under quantized arithmetic
    paris = ours[-2]
    assert paris.is_greedy and paris.logprob > -1.0


@pytest.mark.slow
def test_rolling_windows_agree_with_the_hf_engine(gguf_engine, hf_engine):
    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(n)) for n in (3, 30, 110)] + [""]
    requests = [RollingRequest(t) for t in texts]
    for stride in (None, 48):  # disjoint windows, and overlapping ones over the 150-word text
        ours = gguf_engine.loglikelihood_rolling(requests, stride=stride)
        reference = hf_engine.loglikelihood_rolling(requests, stride=stride)
        assert mean_token_difference(ours, reference) < Q4_1_MEAN_TOKEN_TOLERANCE
        assert [r.is_greedy for r in ours] == [r.is_greedy for r in reference]
        assert ours[-1].n_tokens == 0 and ours[-1].logprob == 0.0


@pytest.mark.slow
def test_results_do_not_depend_on_request_order_or_company(gguf_engine):
    requests = multiple_choice_requests(seed=2)
    shuffled = list(range(len(requests)))
    random.Random(3).shuffle(shuffled)
    together = gguf_engine.loglikelihood(requests)
    reordered = gguf_engine.loglikelihood([requests[i] for i in shuffled])
    one_by_one = [gguf_engine.loglikelihood([r])[0] for r in requests[:4]]
    for position, index in enumerate(shuffled):
        assert reordered[position].logprob == pytest.approx(together[index].logprob, abs=1e-3)
        assert reordered[position].is_greedy == together[index].is_greedy
    for alone, batched in zip(one_by_one, together):
        assert alone.logprob == pytest.approx(batched.logprob, abs=1e-3)
    prompts = [GenerationRequest(gguf_engine.chat_prompt(q), max_new_tokens=8) for q in ("Name a color.", "Hi!")]
    assert gguf_engine.generate(prompts)[::-1] == gguf_engine.generate(prompts[::-1])
    assert gguf_engine.generate(prompts[1:]) == gguf_engine.generate(prompts)[1:]


@pytest.mark.slow
def test_generate_answers_and_cuts_at_stops_after_the_answer_begins(gguf_engine):
    question = gguf_engine.chat_prompt("What is the capital of France? Answer in one word.")
    counting = gguf_engine.chat_prompt("Count from one to ten in words, separated by commas.")
    requests = [GenerationRequest(question, stop=("\n",), max_new_tokens=16),
                GenerationRequest(counting, stop=(",",), max_new_tokens=32),
                GenerationRequest(counting, max_new_tokens=3)]
    heard: dict[int, list[int]] = {}
    answer, counted, short = gguf_engine.generate(
        requests, on_token=lambda index, token: heard.setdefault(index, []).append(token))
    for index, text in enumerate((answer, counted, short)):  # what a streaming server hears spells the answer
        decoded = gguf_engine.tokenizer.decode(heard[index], skip_special_tokens=True)
        assert cut_at_stop(decoded, requests[index].stop) == text
    assert "paris" in answer.lower()
    assert "," not in counted and counted.strip()
    assert len(gguf_engine.tokenizer(short, add_special_tokens=False)["input_ids"]) <= 3
