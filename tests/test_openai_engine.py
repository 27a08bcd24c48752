"""OpenAIEngine: an OpenAI-compatible server evaluated like a local model.

The reference is llama-cpp-python's own server on the builtin GGUF file against LlamaCppEngine on
the same file: the same llama.cpp kernels once the server uses flash attention as llama.cpp's
default context does (without it, scores differ by ~0.08 nats per token, measured). Measured with
it on this 2-core CPU: mean |Δ log p| 4e-7 nats per token and identical greedy text. The server's
quirk: it gives no log-prob for the first echoed token, even after the BOS token, so a rolling text
scores one token fewer there. Fast tests drive a fake server for the protocol edges (retries,
servers without prompt log-probs); tests marked slow start the real one.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
from endpoint_fakes import completion
from servers import free_port, start_llama_server, stop_server

from cli.main import main
from engines.endpoint import Endpoint, parse_endpoint
from engines.openai_api import (
    NotScorable,
    OpenAIEngine,
    _continuation_logprob,
)
from harness.errors import DomainbenchError
from harness.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest, is_failed_response
from reports.schema import load_result, result_path

EXACT_TOKEN_TOLERANCE = 1e-3  # measured 4e-7 nats per token; a shifted position costs whole nats
# Rolling windows that each open with the BOS token, against LlamaCppEngine's that do not: measured
# 0.012 (stride 16) and 0.024 (disjoint) nats per token.
WINDOW_TOKEN_TOLERANCE = 0.1
WORDS = ["the", "open", "system", "call", "file", "descriptor", "returns", "error", "errno", "pathname", "rename",
         "directory", "process", "signal", "memory", "socket", "buffer", "read", "write", "flags", "mode"]


# ----- the endpoint spec ---------------------------------------------------------------------------

def test_endpoint_specs_parse_and_other_model_specs_are_not_endpoints():
    assert parse_endpoint("openai+http://127.0.0.1:8000/v1") == Endpoint("http://127.0.0.1:8000/v1", None)
    assert parse_endpoint("openai+https://host/v1/#org/model") == Endpoint("https://host/v1", "org/model")
    assert parse_endpoint("smollm2-135m-instruct") is None
    assert parse_endpoint("Qwen/Qwen2.5-0.5B") is None
    with pytest.raises(DomainbenchError, match="expected openai\\+http"):
        parse_endpoint("openai+localhost:8000")


def test_a_down_endpoint_is_one_line_and_exit_2_before_any_work(capsys, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", f"openai+{url}", "--suite", "no-such-suite", "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and url in error and "not reachable" in error
    assert time.perf_counter() - started < 15
    assert not any(tmp_path.iterdir())


# ----- the protocol, against a fake server -----------------------------------------------------------

def test_generation_is_greedy_and_cuts_stops_after_the_answer_begins(fake_server):
    server = fake_server(lambda body: completion("\nParis\nLyon"))
    engine = OpenAIEngine(f"openai+{server.url}", progress=False)
    answers = engine.generate([GenerationRequest("Capital?", stop=("\n",), max_new_tokens=7),
                               GenerationRequest("Capital?", max_new_tokens=7)])
    assert answers == ["\nParis", "\nParis\nLyon"]  # as HFEngine: a leading stop string does not end the answer
    body = server.bodies[0]
    assert body["temperature"] == 0 and body["max_tokens"] == 7 and "stop" not in body
    assert body["model"] == "fake-model" and body["prompt"] == "Capital?"
    assert engine.tokens_processed == 16 and engine.errors == []


def test_server_errors_are_retried_with_backoff_then_recorded_not_raised(fake_server):
    attempts = []

    def flaky(body):
        attempts.append(body["prompt"])
        if body["prompt"] == "broken":
            return 500, {"error": "boom"}
        if body["prompt"] == "wrong":
            return 400, {"error": "bad request"}
        return (503, {"error": "busy"}) if attempts.count(body["prompt"]) <= 2 else completion(" ok")

    server = fake_server(flaky)
    engine = OpenAIEngine(f"openai+{server.url}", retries=2, backoff=0.01, concurrency=3, progress=False)
    answers = engine.generate([GenerationRequest(p, max_new_tokens=2) for p in ("busy", "broken", "wrong")])
    assert answers == [" ok", "", ""]
    assert attempts.count("busy") == 3 and attempts.count("broken") == 3
    assert attempts.count("wrong") == 1  # a 4xx other than 429 is the request's fault: not retried
    assert engine.client.error_counts() == {"http_500": 1, "http_400": 1} and engine.client.requests_made == 3


def test_a_server_without_prompt_logprobs_makes_loglikelihood_not_scorable(fake_server):
    server = fake_server(lambda body: completion(" Paris"))  # as Ollama or TGI: logprobs null
    engine = OpenAIEngine(f"openai+{server.url}", progress=False)
    with pytest.raises(NotScorable, match="no log-probabilities") as raised:
        engine.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])
    assert server.url in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(NotScorable):
        engine.loglikelihood_rolling([RollingRequest("Some text.")])
    assert engine.generate([GenerationRequest("x", max_new_tokens=2)]) == [" Paris"]


def test_eval_reports_tasks_an_endpoint_cannot_score_and_still_runs_the_others(fake_server, tmp_path, capsys):
    server = fake_server(lambda body: completion(" EACCES"))
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", f"openai+{server.url}", "--suite", "tiny", "--tasks",
              "section-classification,errno-qa", "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "section-classification: not scorable" in err
    assert err.strip().splitlines()[-1].startswith(f"error: endpoint {server.url}: not scorable")
    assert load_result(result_path(tmp_path, "base", "errno-qa")).metrics["exact_match"]["value"] > 0
    assert not result_path(tmp_path, "base", "section-classification").exists()


def echoed(tokens, offsets, logprobs, completion_tokens=1):
    tops = [None if value is None else {token: value} for token, value in zip(tokens, logprobs)]
    return {"choices": [{"text": "", "logprobs": {"tokens": tokens, "text_offset": offsets,
                                                   "token_logprobs": logprobs, "top_logprobs": tops}}],
            "usage": {"completion_tokens": completion_tokens}}


def test_the_continuation_is_found_from_the_end_of_the_echoed_prompt():
    # vLLM: the BOS token is echoed at offset 0 and the offsets count its text.
    vllm = echoed(["<s>", "The", " capital", " is", " Paris", "."], [0, 3, 6, 14, 17, 23],
                  [None, -5.0, -2.0, -1.0, -0.5, -0.1])
    assert _continuation_logprob(vllm, len(" Paris")).n_tokens == 1
    assert _continuation_logprob(vllm, len(" Paris")).logprob == -0.5
    # llama-cpp-python: the BOS is dropped, special tokens render as "", a generated EOS is not echoed.
    llama_cpp = echoed(["user", "", "\n", "Hi", " there"], [0, 4, 4, 5, 7], [None, -1.0, -2.0, -3.0, -4.0], 0)
    whole = _continuation_logprob(llama_cpp, len("Hi there"))
    assert (whole.logprob, whole.n_tokens) == (-7.0, 2)
    # A token that straddles the boundary counts as continuation, as when HFEngine encodes the pair whole.
    assert _continuation_logprob(llama_cpp, len("i there")).n_tokens == 2


# ----- the real thing: llama-cpp-python's server on the builtin GGUF --------------------------------

@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    process, url = start_llama_server(tmp_path_factory.mktemp("server") / "server.log")
    yield url
    stop_server(process)


@pytest.fixture(scope="module")
def tokenizer():
    from harness.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("smollm2-135m-instruct"))


@pytest.fixture(scope="module")
def endpoint_engine(llama_server, tokenizer):
    engine = OpenAIEngine(f"openai+{llama_server}", tokenizer, concurrency=2, progress=False)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def gguf_engine(tokenizer):
    from engines.llama_cpp import LlamaCppEngine
    from harness.models import gguf_origin

    engine = LlamaCppEngine(gguf_origin("smollm2-135m-instruct"), tokenizer, max_length=2048, n_threads=1, progress=False)
    yield engine
    engine.close()


def mean_token_difference(ours, reference) -> float:
    return sum(abs(a.logprob - b.logprob) for a, b in zip(ours, reference)) / sum(r.n_tokens for r in reference)


@pytest.mark.slow
def test_loglikelihood_from_prompt_logprobs_equals_llama_cpp_in_process(endpoint_engine, gguf_engine):
    rng = random.Random(0)
    requests = []
    for _ in range(2):
        context = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))) + " Answer:"
        requests += [LoglikelihoodRequest(context, f" {label}") for label in ("yes", "maybe so")]
    requests.append(LoglikelihoodRequest("The capital of France is", " Paris"))
    ours, reference = endpoint_engine.loglikelihood(requests), gguf_engine.loglikelihood(requests)
    assert [r.n_tokens for r in ours] == [r.n_tokens for r in reference]
    assert mean_token_difference(ours, reference) < EXACT_TOKEN_TOLERANCE
    assert [r.is_greedy for r in ours] == [r.is_greedy for r in reference]
    assert ours[-1].is_greedy and ours[-1].logprob > -1.0


@pytest.mark.slow
def test_rolling_equals_llama_cpp_but_for_the_first_token_the_server_does_not_score(endpoint_engine, gguf_engine,
                                                                                    tokenizer):
    texts = ["The open() system call opens the file specified by pathname.",
             "Größe: 42 Bytes — ünïcödé text counts bytes, not characters."]
    ours = endpoint_engine.loglikelihood_rolling([RollingRequest(t) for t in texts])
    reference = gguf_engine.loglikelihood_rolling([RollingRequest(t) for t in texts])
    first_tokens = [tokenizer.decode(tokenizer(t, add_special_tokens=False)["input_ids"][:1]) for t in texts]
    firsts = gguf_engine.loglikelihood_rolling([RollingRequest(t) for t in first_tokens])
    for mine, theirs, first in zip(ours, reference, firsts):
        assert mine.n_tokens == theirs.n_tokens - 1
        expected = theirs.logprob - first.logprob
        assert mine.logprob == pytest.approx(expected, abs=EXACT_TOKEN_TOLERANCE * theirs.n_tokens)


@pytest.mark.slow
def test_texts_longer_than_the_context_are_scored_in_windows_every_token_once(llama_server, tokenizer):
    from engines.llama_cpp import LlamaCppEngine
    from harness.models import gguf_origin

    rng = random.Random(1)
    text = [RollingRequest(" ".join(rng.choice(WORDS) for _ in range(40)))]
    # Windows of 32 tokens: the engine keeps 3 of its max_length for the prefix, a context and a generated token.
    endpoint = OpenAIEngine(f"openai+{llama_server}", tokenizer, max_length=35, concurrency=2, progress=False)
    reference = LlamaCppEngine(gguf_origin("smollm2-135m-instruct"), tokenizer, max_length=32, n_threads=1, progress=False)
    try:
        (mine,), (theirs,) = endpoint.loglikelihood_rolling(text, stride=16), reference.loglikelihood_rolling(text,
                                                                                                             stride=16)
        first_token = tokenizer.decode(tokenizer(text[0].text, add_special_tokens=False)["input_ids"][:1])
        (first,) = reference.loglikelihood_rolling([RollingRequest(first_token)])
    finally:
        endpoint.close()
        reference.close()
    assert theirs.n_tokens > 32 and mine.n_tokens == theirs.n_tokens - 1
    assert abs(mine.logprob - (theirs.logprob - first.logprob)) / mine.n_tokens < WINDOW_TOKEN_TOLERANCE


@pytest.mark.slow
def test_generation_equals_llama_cpp_in_process_and_stops_apply(endpoint_engine, gguf_engine):
    question = endpoint_engine.chat_prompt("What is the capital of France? Answer in one word.")
    counting = endpoint_engine.chat_prompt("Count from one to ten in words, separated by commas.")
    requests = [GenerationRequest(question, stop=("\n",), max_new_tokens=10),
                GenerationRequest(counting, stop=(",",), max_new_tokens=8)]
    ours = endpoint_engine.generate(requests)
    assert ours == gguf_engine.generate(requests)
    assert "paris" in ours[0].lower() and "," not in ours[1] and ours[1].strip()


@pytest.mark.slow
def test_echo_logprobs_shifted_by_the_server_are_caught_not_used(llama_server):
    # Without the tokenizer no BOS opens the prompt, and llama-cpp-python then echoes each token's
    # log-prob from the position after it.
    engine = OpenAIEngine(f"openai+{llama_server}", progress=False)
    with pytest.raises(NotScorable, match="misaligned"):
        engine.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])


@pytest.mark.slow
def test_eval_on_an_endpoint_writes_results_with_serving_figures(llama_server, tmp_path):
    main(["eval", "--model", f"openai+{llama_server}", "--tokenizer", "smollm2-135m-instruct", "--suite", "tiny",
          "--tasks", "section-classification,errno-qa", "--limit", "2", "--num-fewshot", "0", "--concurrency", "2",
          "--output", str(tmp_path)])
    for task in ("section-classification", "errno-qa"):
        result = load_result(result_path(tmp_path, "base", task))
        assert result.model["endpoint"] == llama_server and result.model["served_model"].endswith(".gguf")
        assert len(result.model["fingerprint"]) == 64 and len(result.examples) == 2
        serving = result.cost["serving"]
        assert serving["request_errors"] == 0 and serving["requests"] >= 2 and serving["latency_p50_seconds"] > 0
        assert result.settings["device"] == "endpoint" and result.cost["tokens_per_second"] > 0


@pytest.mark.slow
def test_a_server_killed_mid_run_gives_recorded_errors_not_a_crash(tmp_path, tokenizer):
    process, url = start_llama_server(tmp_path / "server.log")
    try:
        engine = OpenAIEngine(f"openai+{url}", tokenizer, concurrency=2, retries=2, backoff=0.1, timeout=20,
                              progress=False)
        requests = [GenerationRequest(engine.chat_prompt(f"Name {n} colors."), max_new_tokens=16) for n in range(2, 12)]
        answers: list = []
        running = threading.Thread(target=lambda: answers.extend(engine.generate(requests)))
        started = time.perf_counter()
        running.start()
        while engine.client.requests_made < 2 and running.is_alive():
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        running.join(timeout=60)
        assert not running.is_alive() and time.perf_counter() - started < 60
        assert len(answers) == len(requests) and sum(bool(a) for a in answers) >= 2
        assert engine.errors and set(engine.client.error_counts()) <= {"connection", "timeout"}
        assert engine.client.requests_made == len(requests)
        scores = engine.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])
        assert is_failed_response(scores[0]) and engine.errors[-1].kind == "connection"
    finally:
        stop_server(process)


def test_a_server_started_with_an_api_key_is_reached_with_openai_api_key(tiny_model, tiny_tokenizer, monkeypatch):
    from servers import app_in_thread

    from engines.hf import HFEngine
    from serve.api import create_app
    from serve.model import ServedModel

    served = ServedModel("tiny", HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False))
    with app_in_thread(create_app(served, api_key="s3cret")) as url:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        with pytest.raises(DomainbenchError, match="GET /models answered 401"):
            OpenAIEngine(f"openai+{url}", tiny_tokenizer, progress=False)
        monkeypatch.setenv("OPENAI_API_KEY", "s3cret")
        engine = OpenAIEngine(f"openai+{url}", tiny_tokenizer, progress=False)
        assert engine.generate([GenerationRequest("Hello", (), 2)])[0] is not None and not engine.errors
        engine.close()
