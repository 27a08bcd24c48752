"""`domainbench serve`: an OpenAI-compatible server for a model or a run's configuration."""

from __future__ import annotations

import json
import math
import re
import signal
import socket
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from engines.hf import HFEngine
from engines.stops import cut_at_stop
from harness.requests import GenerationRequest, LoglikelihoodRequest
from serve.api import create_app
from serve.metrics import ServingMetrics
from serve.model import ServedModel
from tests.servers import STOP_SECONDS, app_in_thread, start_serve, stop_serve


@pytest.fixture
def client(tiny_model, tiny_tokenizer):
    engine = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    with TestClient(create_app(ServedModel("tiny", engine))) as client:
        yield client, engine


def test_completion_is_the_engines_greedy_generation(client):
    client, engine = client
    body = client.post("/v1/completions", json={"prompt": "Hello there", "max_tokens": 5, "stop": ["\n"]}).json()
    expected = engine.generate([GenerationRequest("Hello there", ("\n",), 5)])[0]
    assert body["choices"][0]["text"] == expected
    assert body["usage"]["completion_tokens"] <= 5 and body["model"] == "tiny"


def test_echoed_prompt_logprobs_score_like_the_engine(client):
    """What engines.openai_api scores log-likelihood tasks with equals the offline engine's score."""
    from engines.openai_api import _continuation_logprob, _prefix_text

    client, engine = client
    context, continuation = "The errno for a missing file is", " ENOENT"
    prompt = _prefix_text(engine.tokenizer) + context + continuation
    body = client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 1, "echo": True, "logprobs": 1,
                                                "temperature": 0}).json()
    served = _continuation_logprob(body, len(continuation))
    offline = engine.loglikelihood([LoglikelihoodRequest(context, continuation)])[0]
    assert served.n_tokens == offline.n_tokens
    assert math.isclose(served.logprob, offline.logprob, abs_tol=1e-3)
    assert body["choices"][0]["text"].startswith(prompt)


@pytest.mark.parametrize("field, value", [("temperature", 0.7), ("top_p", 0.9), ("n", 2)])
def test_sampling_and_streaming_are_refused_with_one_line(client, field, value):
    client, _ = client
    response = client.post("/v1/completions", json={"prompt": "x", field: value})
    assert response.status_code == 400
    assert "\n" not in response.json()["error"]["message"]
    assert f'kind="{response.json()["error"]["code"]}"' in client.get("/metrics").text


def test_model_output_is_json_encoded(client, monkeypatch):
    client, engine = client
    hostile = '"}\n{"injected": true} \u2028 <script>\x00'
    monkeypatch.setattr(engine, "generate", lambda requests, on_token=None: [hostile for _ in requests])
    body = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}).json()
    assert body["choices"][0]["message"]["content"] == hostile


# ----- the command, as a process ---------------------------------------------------------------------

def _metric(text: str, name: str) -> float:
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


@pytest.mark.slow
def test_served_model_answers_meters_and_stops_cleanly_on_sigterm(tiny_tokenizer):
    from engines.openai_api import OpenAIEngine

    process, url = start_serve(["--model", "tiny-random-llama"])
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/v1/models").json()["data"][0]["id"] == "tiny-random-llama"
            completion = http.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 4}).json()
            assert completion["choices"][0]["finish_reason"] in ("length", "stop")
            chat = http.post("/v1/chat/completions",
                             json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).json()
            assert chat["choices"][0]["message"]["role"] == "assistant"
            endpoint = OpenAIEngine(f"openai+{url}/v1", tiny_tokenizer, concurrency=2, progress=False)
            scored = endpoint.loglikelihood([LoglikelihoodRequest("Question: x\nAnswer:", " EINVAL")])[0]
            assert scored.n_tokens > 0 and not endpoint.errors  # the log-prob check passed: scorable
            endpoint.close()
            metrics = http.get("/metrics").text
        assert _metric(metrics, "domainbench_requests_total") >= 4
        assert _metric(metrics, "domainbench_generated_tokens_total") > 0
        assert _metric(metrics, "domainbench_time_to_first_token_seconds_count") >= 2
        assert _metric(metrics, "process_resident_memory_bytes") > 0
        assert _metric(metrics, "domainbench_requests_in_flight") == 0
    finally:
        code = stop_serve(process)
    assert code == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", int(url.rsplit(":", 1)[1])))  # the port is released


def test_a_configuration_the_run_did_not_evaluate_is_refused(tmp_path):
    from click.testing import CliRunner

    from cli.main import cli

    (tmp_path / "run.yaml").write_text("name: r\nconfigurations: [base]\n")
    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--configuration", "adapter+rag"])
    assert "did not evaluate configuration 'adapter+rag'" in str(result.exception)


def test_concurrent_requests_answer_as_they_would_alone(client):
    """Requests that wait for the engine run as one batch; each still gets its own greedy answer."""
    from concurrent.futures import ThreadPoolExecutor

    client, engine = client
    prompts = [f"Prompt number {i} is" for i in range(6)]
    alone = [engine.generate([GenerationRequest(p, (), 6)])[0] for p in prompts]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda p: client.post("/v1/completions", json={"prompt": p, "max_tokens": 6}).json(),
                                prompts))
    assert [a["choices"][0]["text"] for a in answers] == alone


def test_a_streamed_completion_arrives_as_server_sent_events(client):
    client, _ = client
    body = {"prompt": "Hello", "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    plain = client.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 4}).json()
    assert "".join(c["text"] for chunk in chunks for c in chunk["choices"]) == plain["choices"][0]["text"]
    assert chunks[-1]["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]


def test_a_stream_sends_no_usage_chunk_unless_asked(client):
    """OpenAI's rule: the usage chunk (empty `choices`) only with stream_options.include_usage."""
    client, _ = client
    body = {"prompt": "Hello", "max_tokens": 4, "stream": True}
    with client.stream("POST", "/v1/completions", json=body) as response:
        chunks = [json.loads(event) for event in _events(response)[:-1]]
    assert chunks and all(chunk["choices"] and "usage" not in chunk for chunk in chunks)


class _HeldEngine:
    """Decodes a fixed answer a token at a time and waits, after its first tokens, until the test lets it go on."""

    max_length = 256

    def __init__(self, tokenizer, answer: str = "Hello world, token by token.", fail: bool = False):
        self.tokenizer, self.answer, self.fail = tokenizer, answer, fail
        self.go_on = threading.Event()

    def chat_prompt(self, user_text: str) -> str:
        return user_text

    def generate(self, requests, on_token=None):
        tokens = self.tokenizer(self.answer, add_special_tokens=False)["input_ids"]
        for position, token in enumerate(tokens):
            if on_token is not None:
                on_token(0, token)
            if position == 2:
                assert self.go_on.wait(30), "the test never received the first chunk"
                if self.fail:
                    raise RuntimeError("the engine broke mid-answer")
        return [cut_at_stop(self.tokenizer.decode(tokens), requests[0].stop)]


def _events(response) -> list:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def test_a_stream_sends_text_while_the_engine_is_still_decoding(tiny_tokenizer):
    engine = _HeldEngine(tiny_tokenizer)
    metrics = ServingMetrics()
    with app_in_thread(create_app(ServedModel("held", engine), metrics)) as url, httpx.Client(timeout=30) as http:
        body = {"prompt": "Say hello", "max_tokens": 32, "stream": True, "stream_options": {"include_usage": True}}
        with http.stream("POST", f"{url}/completions", json=body) as response:
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[len("data: "):])["choices"][0]["text"]  # text came before the engine went on
            engine.go_on.set()
            rest = [line[len("data: "):] for line in lines if line.startswith("data: ")]
    chunks = [json.loads(first[len("data: "):])] + [json.loads(event) for event in rest[:-1]]
    assert rest[-1] == "[DONE]"
    assert "".join(c["text"] for chunk in chunks for c in chunk["choices"]) == engine.answer
    assert chunks[-2]["choices"][0]["finish_reason"] is not None and chunks[-1]["usage"]["completion_tokens"] > 0
    exposition = metrics.exposition().decode()
    ttft = _metric(exposition, "domainbench_time_to_first_token_seconds_sum")
    latency = _metric(exposition, "domainbench_request_latency_seconds_sum")
    assert 0 < ttft < latency


def test_a_streamed_chat_answer_names_its_role_once_and_stops_before_the_stop_string(tiny_tokenizer):
    engine = _HeldEngine(tiny_tokenizer, answer="Yes.\n\nNo.")
    engine.go_on.set()
    with TestClient(create_app(ServedModel("held", engine))) as client:
        body = {"messages": [{"role": "user", "content": "Well?"}], "stream": True, "stop": ["\n\n"]}
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            events = _events(response)
    chunks = [json.loads(event) for event in events[:-1]]
    deltas = [c["delta"] for chunk in chunks for c in chunk["choices"]]
    assert [d.get("role") for d in deltas].count("assistant") == 1 and deltas[0]["role"] == "assistant"
    assert "".join(d.get("content", "") for d in deltas) == "Yes."
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)


def test_an_engine_failure_mid_stream_ends_it_with_an_error_event(tiny_tokenizer):
    engine = _HeldEngine(tiny_tokenizer, fail=True)
    engine.go_on.set()
    metrics = ServingMetrics()
    with TestClient(create_app(ServedModel("held", engine), metrics)) as client:
        with client.stream("POST", "/v1/completions", json={"prompt": "x", "stream": True}) as response:
            assert response.status_code == 200  # the status line went with the first chunk
            events = _events(response)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "engine_RuntimeError"
    exposition = metrics.exposition().decode()
    assert _metric(exposition, 'domainbench_request_errors_total{kind="engine_RuntimeError"}') == 1
    assert _metric(exposition, 'domainbench_requests_total{route="completions",status="500"}') == 1


@pytest.mark.slow
def test_our_server_is_evaluated_load_tested_and_monitored_through_the_endpoint_path(tmp_path, capsys):
    """Deploy, then watch: eval through the endpoint, a load test, and a monitor round whose parity holds."""
    import sqlite3

    from cli.main import main

    process, url = start_serve(["--model", "tiny-random-llama"])
    endpoint = f"openai+{url}/v1"
    try:
        main(["eval", "--model", endpoint, "--tokenizer", "tiny-random-llama", "--suite", "tiny", "--limit", "3",
              "--num-fewshot", "0", "--output", str(tmp_path / "baseline")])
        out = tmp_path / "loadtest.json"
        main(["loadtest", endpoint, "--suite", "tiny", "--concurrency", "1,2", "--requests", "4", "--max-tokens", "4",
              "--tokenizer", "tiny-random-llama", "--out", str(out)])
        levels = json.loads(out.read_text())["levels"]
        assert [level["concurrency"] for level in levels] == [1, 2]
        assert all(level["errors"] == 0 and level["latency_p50_seconds"] > 0 for level in levels)
        db = tmp_path / "monitor.sqlite"
        main(["monitor", endpoint, "--baseline", str(tmp_path / "baseline"), "--once", "--sample", "3",
              "--tokenizer", "tiny-random-llama", "--db", str(db)])
    finally:
        assert stop_serve(process) == 0
    assert "verdict: pass" in capsys.readouterr().out
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT parity, passed, errors FROM rounds").fetchall() == [(1, 1, 0)]


def test_llama_cpp_engine_needs_a_gguf(tmp_path, capsys):
    from cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--model", "tiny-random-llama", "--engine", "llama.cpp"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith("is not a .gguf file")


@pytest.mark.slow
def test_a_gguf_is_handed_to_llama_cpps_own_server_under_the_same_pid():
    from harness.models import gguf_origin

    process, url = start_serve(["--model", str(gguf_origin("smollm2-135m-instruct")), "--engine", "llama.cpp"],
                          probe="/v1/models")  # llama-cpp-python's server has no /health
    try:
        completion = httpx.post(f"{url}/v1/completions", json={"prompt": "The ls command", "max_tokens": 4,
                                                               "temperature": 0}, timeout=60).json()
        assert completion["choices"][0]["text"] and completion["model"].endswith(".gguf")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=STOP_SECONDS)  # the PID we started is the server's: stopped by it


class _PassagesInFront:
    """An augmenter that puts a fixed passage before the prompt, recording each query."""

    def __init__(self):
        self.queries = []

    def augment(self, query, prompt):
        self.queries.append(query)
        return f"Reference documentation: EINVAL means invalid.\n\n{prompt}", []


def test_scoring_is_refused_on_rag_and_generation_retrieves(tiny_model, tiny_tokenizer):
    """A scored (echoed) prompt would carry the candidate answer into the retrieval query: refused, one line."""
    augmenter = _PassagesInFront()
    served = ServedModel("s1/rag", HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False), augmenter)
    with TestClient(create_app(served)) as client:
        scored = client.post("/v1/completions", json={"prompt": "Q: errno?\nA: EINVAL", "max_tokens": 1,
                                                      "echo": True, "logprobs": 1})
        assert scored.status_code == 400 and scored.json()["error"]["code"] == "rag_scoring_refused"
        assert augmenter.queries == []
        generated = client.post("/v1/completions", json={"prompt": "Q: errno?\nA:", "max_tokens": 2})
    assert generated.status_code == 200 and augmenter.queries == ["Q: errno?\nA:"]
