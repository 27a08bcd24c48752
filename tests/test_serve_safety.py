"""`domainbench serve` safe to expose: the API key, each limit a 4xx naming it, clients that give up,
an engine that answers short, the drain on SIGTERM, and a bad or busy port."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from engines.hf import HFEngine
from serve.api import create_app
from serve.completions import ServingLimits, token_pieces
from serve.metrics import ServingMetrics
from serve.model import ServedModel
from tests.servers import app_in_thread, free_port


def _metric(metrics: ServingMetrics, name: str) -> float:
    text = metrics.exposition().decode()
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE))


def _eventually(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class _EndlessEngine:
    """Decodes one token every few milliseconds for ever, until its `on_token` raises (the server stopping it)."""

    max_length = 256

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.started, self.stopped = threading.Event(), threading.Event()

    def chat_prompt(self, user_text: str) -> str:
        return user_text

    def generate(self, requests, on_token=None):
        token = self.tokenizer("x", add_special_tokens=False)["input_ids"][0]
        self.started.set()
        try:
            while True:
                time.sleep(0.005)
                for index in range(len(requests)):
                    on_token(index, token)
        finally:
            self.stopped.set()


@pytest.fixture
def tiny_served(tiny_model, tiny_tokenizer):
    return ServedModel("tiny", HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False))


# ----- the API key -----------------------------------------------------------------------------------

def test_with_an_api_key_every_route_but_health_wants_it(tiny_served):
    metrics = ServingMetrics()
    with TestClient(create_app(tiny_served, metrics, api_key="s3cret")) as client:
        refused = client.get("/v1/models")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        assert client.post("/v1/completions", json={"prompt": "x", "max_tokens": 1}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/health").status_code == 200
        allowed = {"Authorization": "Bearer s3cret"}
        assert client.get("/v1/models", headers=allowed).json()["data"][0]["id"] == "tiny"
        assert client.post("/v1/completions", json={"prompt": "x", "max_tokens": 1}, headers=allowed).status_code == 200
    assert _metric(metrics, 'domainbench_request_errors_total{kind="invalid_api_key"}') == 3


@pytest.mark.parametrize("host, key, warned", [("127.0.0.1", None, False), ("localhost", None, False),
                                               ("::1", None, False), ("0.0.0.0", None, True),
                                               ("0.0.0.0", "k", False), ("10.1.2.3", None, True)])
def test_binding_beyond_loopback_without_a_key_warns(host, key, warned):
    from serve.process import exposure_warning

    assert (exposure_warning(host, key) is not None) == warned


def test_the_key_comes_from_the_environment_too(monkeypatch):
    from cli.serve import serve_command

    monkeypatch.setenv("DOMAINBENCH_API_KEY", "from-env")
    context = serve_command.make_context("serve", ["--model", "tiny-random-llama"])
    assert context.params["api_key"] == "from-env"


# ----- limits: each a 4xx with its reason --------------------------------------------------------

@pytest.mark.parametrize("body, status, kind", [
    ({"prompt": 12345}, 400, "invalid_request"),
    ({"prompt": [1.5, 2]}, 400, "invalid_request"),
    ({"prompt": [[1, 2], []]}, 400, "invalid_request"),
    ({"prompt": [10**9]}, 400, "invalid_request"),
    ({"prompt": ["a", "b", "c"]}, 400, "too_many_prompts"),
    ({"prompt": "x", "max_tokens": 10**9}, 400, "context_length_exceeded"),
    ({"prompt": "x", "max_tokens": 1e9}, 400, "invalid_request"),
    ({"prompt": "x", "max_tokens": 256}, 400, "context_length_exceeded"),
    ({"prompt": "word " * 300, "max_tokens": 1}, 400, "context_length_exceeded"),
    ({"prompt": "x", "max_tokens": 1, "padding": "y" * 5000}, 413, "body_too_large"),
    ({"messages": [{"role": "user", "content": "word " * 300}]}, 400, "context_length_exceeded"),
])
def test_each_limit_is_a_4xx_naming_it(tiny_served, body, status, kind):
    tiny_served.limits = ServingLimits(max_prompts=2, max_body_bytes=4000)
    route = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    with TestClient(create_app(tiny_served)) as client:
        response = client.post(route, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == kind and "\n" not in error["message"]


def test_requests_beyond_the_concurrency_limit_are_answered_429(tiny_tokenizer):
    engine = _EndlessEngine(tiny_tokenizer)
    served = ServedModel("endless", engine, limits=ServingLimits(max_concurrent=1))
    with app_in_thread(create_app(served)) as url, httpx.Client(timeout=30) as http:
        hold = threading.Thread(target=lambda: _post_quietly(f"{url}/completions", "x", 2.0))
        hold.start()
        assert engine.started.wait(10)
        busy = http.post(f"{url}/completions", json={"prompt": "y", "max_tokens": 1})
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        assert "limit" in busy.json()["error"]["message"]
        hold.join()
        assert engine.stopped.wait(10)  # the held request's client gave up: its generation stopped


def test_echoed_logprobs_decode_a_bounded_window_per_token(tiny_tokenizer):
    """Linear, not quadratic: each token's text is found from a few tokens before it, not the whole prefix."""
    ids = tiny_tokenizer("The open() system call opens the file. " * 20, add_special_tokens=False)["input_ids"]
    lengths = []
    decode = tiny_tokenizer.decode

    class Spy:
        def decode(self, token_ids, **options):
            lengths.append(len(token_ids))
            return decode(token_ids, **options)
    pieces, offsets = token_pieces(Spy(), ids)
    assert "".join(pieces) == decode(ids)
    assert offsets == [sum(len(p) for p in pieces[:k]) for k in range(len(ids))]
    assert len(ids) > 100 and max(lengths) <= 8 and len(lengths) <= 2 * len(ids) + 8


def _pieces_by_whole_prefix(tokenizer, ids):
    """The quadratic reference: each token's text from decoding the whole prefix with and without it."""
    pieces, previous = [], ""
    for k in range(len(ids)):
        text = tokenizer.decode(ids[:k + 1])
        pieces.append(text[len(previous):] if text.startswith(previous) else tokenizer.decode([ids[k]]))
        previous = text
    return pieces


@pytest.mark.parametrize("text", ["The open() system call opens the file. " * 8, "naïve café — ok, 日本語 done"])
def test_token_pieces_equal_decoding_the_whole_prefix(tiny_tokenizer, text):
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert token_pieces(tiny_tokenizer, ids)[0] == _pieces_by_whole_prefix(tiny_tokenizer, ids)


# ----- clients that give up ------------------------------------------------------------------------

def test_a_client_that_times_out_stops_its_generation_and_is_counted_499(tiny_tokenizer):
    engine = _EndlessEngine(tiny_tokenizer)
    metrics = ServingMetrics()
    with app_in_thread(create_app(ServedModel("endless", engine), metrics)) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/completions", json={"prompt": "x", "max_tokens": 200}, timeout=1.0)
        assert engine.stopped.wait(10)
        assert _eventually(lambda: _metric(
            metrics, 'domainbench_requests_total{route="completions",status="499"}') == 1)
    assert _metric(metrics, 'domainbench_requests_total{route="completions",status="200"}') == 0


def test_a_stream_closed_by_its_client_stops_its_generation_and_is_counted_499(tiny_tokenizer):
    engine = _EndlessEngine(tiny_tokenizer)
    metrics = ServingMetrics()
    with app_in_thread(create_app(ServedModel("endless", engine), metrics)) as url:
        with httpx.Client(timeout=30) as http, http.stream(
                "POST", f"{url}/completions", json={"prompt": "x", "max_tokens": 200, "stream": True}) as response:
            next(line for line in response.iter_lines() if line.startswith("data: "))
        assert engine.stopped.wait(10)
        assert _eventually(lambda: _metric(
            metrics, 'domainbench_requests_total{route="completions",status="499"}') == 1)


def test_a_request_abandoned_while_it_waits_never_reaches_the_engine(tiny_tokenizer):
    class Counting(_EndlessEngine):
        batches: list = []

        def generate(self, requests, on_token=None):
            self.batches.append([r.prompt for r in requests])
            return super().generate(requests, on_token)
    engine = Counting(tiny_tokenizer)
    with app_in_thread(create_app(ServedModel("endless", engine))) as url:
        first = threading.Thread(target=lambda: _post_quietly(f"{url}/completions", "first", 3.0))
        first.start()
        assert engine.started.wait(10)
        _post_quietly(f"{url}/completions", "second", 0.5)  # waits behind the first, gives up
        first.join()
        assert engine.stopped.wait(10)
        time.sleep(0.3)
    assert engine.batches == [["first"]]


def _post_quietly(url: str, prompt: str, timeout: float) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json={"prompt": prompt, "max_tokens": 200}, timeout=timeout)


# ----- an engine that answers short, and shutdown -----------------------------------------------------

def test_an_engine_that_answers_short_fails_that_batch_and_the_worker_lives_on(tiny_served, monkeypatch):
    real = tiny_served.engine.generate
    monkeypatch.setattr(tiny_served.engine, "generate", lambda requests, on_token=None: [])
    with TestClient(create_app(tiny_served)) as client:
        short = client.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 2})
        assert short.status_code == 500 and "answered 0 of 1" in short.json()["error"]["message"]
        monkeypatch.setattr(tiny_served.engine, "generate", real)
        assert client.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 2}).status_code == 200


def test_sigterm_drains_then_stops_generation_and_answers_503(tiny_tokenizer):
    from serve.process import DrainingServer, uvicorn_config

    engine = _EndlessEngine(tiny_tokenizer)
    served = ServedModel("endless", engine, limits=ServingLimits(drain_seconds=1.0))
    server = DrainingServer(uvicorn_config(create_app(served), host="127.0.0.1", port=free_port(),
                                           timeout_graceful_shutdown=6), served)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert _eventually(lambda: server.started)
    answers = []
    url = f"http://127.0.0.1:{server.config.port}/v1/completions"
    asking = threading.Thread(target=lambda: answers.append(httpx.post(url, json={"prompt": "x"}, timeout=30)))
    asking.start()
    assert engine.started.wait(10)
    stopping = time.monotonic()
    server.handle_exit(signal.SIGTERM, None)
    thread.join(10)
    asking.join(10)
    assert not thread.is_alive() and engine.stopped.is_set()
    assert 1.0 <= time.monotonic() - stopping < 5.0
    assert answers[0].status_code == 503 and answers[0].json()["error"]["code"] == "shutting_down"


def test_a_port_out_of_range_is_one_line_and_exit_2(capsys):
    from cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--model", "tiny-random-llama", "--port", "99999"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: serve --port 99999: not a port number (0..65535)"


def test_a_port_in_use_is_refused_before_serving_on_is_printed(capsys):
    from cli.main import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--model", "tiny-random-llama", "--port", str(port)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "serving on" not in err
    assert err.strip() == f"error: serve: cannot listen on 127.0.0.1:{port} (Address already in use)"


def test_the_key_is_handed_to_llama_cpps_server(monkeypatch):
    import os

    from cli.main import main
    from harness.models import gguf_origin

    class Executed(Exception):
        pass

    def execv(path, argv):
        raise Executed(argv)
    monkeypatch.setattr(os, "execv", execv)
    with pytest.raises(Executed) as executed:
        main(["serve", "--model", str(gguf_origin("smollm2-135m-instruct")), "--engine", "llama.cpp",
              "--api-key", "s3cret", "--port", "0"])
    argv = executed.value.args[0]
    assert argv[argv.index("--api_key") + 1] == "s3cret"


def test_the_key_is_handed_to_vllm():
    from pathlib import Path

    from serve.served import vllm_command

    command = vllm_command("vllm", Path("/m"), name="r/base", dtype="auto", host="127.0.0.1", port=8000, api_key="k")
    assert command[-2:] == ["--api-key", "k"]
    assert "--api-key" not in vllm_command("vllm", Path("/m"), name="r/base", dtype="auto", host="127.0.0.1", port=8000)


def test_starting_the_server_leaves_the_process_logging_handlers_open():
    """uvicorn's default logging setup closes every handler the process has (absl's closes sys.stderr)."""
    import logging

    from serve.process import uvicorn_config

    class Recording(logging.Handler):
        closed = False

        def close(self):
            self.closed = True
            super().close()

    def handler_closed_by(make_config) -> bool:
        handler = Recording()
        logging.getLogger("a-library").addHandler(handler)
        try:
            make_config()
        finally:
            logging.getLogger("a-library").removeHandler(handler)
        return handler.closed

    # (uvicorn.Config with its default log_config would close it, and pytest's own handlers with it.)
    assert not handler_closed_by(lambda: uvicorn_config(lambda scope, receive, send: None))

