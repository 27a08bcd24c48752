"""Traces and feedback of `domainbench serve`: every answer recorded under its response id, ratings taken on
/v1/feedback (committed before they are acknowledged, refused with one reason), counted for Prometheus, and
nothing acknowledged lost when the server is killed with SIGKILL in the middle of a burst."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from serve import traces as traces_module
from serve.traces import TraceStore
from tests.servers import start_serve

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def tiny_engine(tiny_model, tiny_tokenizer):
    from engines.hf import HFEngine

    return HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)


def _client(engine, store: TraceStore | None) -> TestClient:
    from serve.api import create_app
    from serve.model import ServedModel

    return TestClient(create_app(ServedModel("tiny", engine, about={"fingerprint": "f1"}), traces=store))


def _rows(path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def _ask(client: TestClient, content: str) -> str:
    response = client.post(CHAT, json={"messages": [{"role": "user", "content": content}], "max_tokens": 3})
    assert response.status_code == 200
    return response.json()["id"]


def test_every_answer_is_traced_under_its_response_id_streamed_or_not(tiny_engine, tmp_path):
    store = TraceStore(tmp_path / "traces.sqlite")
    client = _client(tiny_engine, store)
    chat = client.post(CHAT, json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
    completion = client.post("/v1/completions", json={"prompt": ["a", "b"], "max_tokens": 2})
    streamed = client.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 3, "stream": True})
    assert chat.headers["X-Trace-Id"] == chat.json()["id"]
    assert completion.headers["X-Trace-Id"] == completion.json()["id"]
    chunk_ids = {json.loads(line[6:])["id"] for line in streamed.text.splitlines()
                 if line.startswith("data: {")}
    assert chunk_ids == {streamed.headers["X-Trace-Id"]}
    rows = _rows(store.path, "SELECT id, route, streamed, prompt_tokens, completion_tokens, finish_reason, "
                             "configuration_fingerprint, latency_seconds, prompt, answer FROM traces ORDER BY seq")
    assert [row[:3] for row in rows] == [(chat.json()["id"], "chat_completions", 0),
                                         (completion.json()["id"], "completions", 0),
                                         (streamed.headers["X-Trace-Id"], "completions", 1)]
    assert rows[1][3:5] == (completion.json()["usage"]["prompt_tokens"],
                            completion.json()["usage"]["completion_tokens"])
    assert rows[1][5] == ",".join(choice["finish_reason"] for choice in completion.json()["choices"])
    assert all(row[6] == traces_module.configuration_fingerprint({"fingerprint": "f1"}) and row[7] > 0
               for row in rows)
    assert all(row[8] is None and row[9] is None for row in rows)  # no text unless asked


def test_text_is_kept_only_when_asked_and_scrubbed_unless_told_not_to(tiny_engine, tmp_path):
    said = "mail jane.doe@example.org or call +44 20 7946 0958"
    for name, store in (("scrubbed", TraceStore(tmp_path / "a.sqlite", keep_text=True)),
                        ("raw", TraceStore(tmp_path / "b.sqlite", keep_text=True, scrub=False))):
        trace_id = _ask(_client(tiny_engine, store), said)
        _client(tiny_engine, store).post("/v1/feedback", json={"id": trace_id, "rating": "down",
                                                               "correction": "write to jane.doe@example.org"})
        ((prompt, answer),) = _rows(store.path, "SELECT prompt, answer FROM traces")
        ((correction,),) = _rows(store.path, "SELECT correction FROM feedback")
        content = json.loads(prompt)[0]["content"]
        assert isinstance(json.loads(answer)[0], str)
        if name == "scrubbed":
            assert content == "mail <email> or call <phone>" and correction == "write to <email>"
        else:
            assert content == said and correction.endswith("jane.doe@example.org")


@pytest.mark.parametrize(("body", "status", "code", "names"), [
    ({"id": "cmpl-none", "rating": "up"}, 404, "trace_not_found", "cmpl-none"),
    ({"rating": "up"}, 400, "invalid_request", "id:"),
    ({"id": "{trace}", "rating": 5}, 400, "invalid_request", "rating:"),
    ({"id": "{trace}", "rating": "down", "correction": ["EACCES"]}, 400, "invalid_request", "correction:"),
    ({"id": "{trace}", "rating": "down", "score": 1}, 400, "invalid_request", "score: unknown field"),
    ({"id": "{trace}", "rating": "down", "comment": "x" * 70_000}, 413, "body_too_large", "65536"),
])
def test_bad_feedback_is_refused_with_one_reason_and_nothing_stored(tiny_engine, tmp_path, body, status, code, names):
    store = TraceStore(tmp_path / "traces.sqlite")
    client = _client(tiny_engine, store)
    trace_id = _ask(client, "Hi")
    body = {key: trace_id if value == "{trace}" else value for key, value in body.items()}
    refused = client.post("/v1/feedback", json=body)
    error = refused.json()["error"]
    assert (refused.status_code, error["code"]) == (status, code)
    assert names in error["message"] and "\n" not in error["message"]
    assert _rows(store.path, "SELECT count(*) FROM feedback") == [(0,)]


def test_a_store_that_fails_costs_the_trace_counted_not_the_answer(tiny_engine, tmp_path):
    store = TraceStore(tmp_path / "traces.sqlite")
    client = _client(tiny_engine, store)
    store.close()  # every write now fails
    assert client.post(CHAT, json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).status_code == 200
    assert 'domainbench_request_errors_total{kind="trace_not_recorded"} 1.0' in client.get("/metrics").text
    unstored = client.post("/v1/feedback", json={"id": "cmpl-1", "rating": "up"})
    assert unstored.status_code == 503 and unstored.json()["error"]["code"] == "feedback_not_stored"


def test_a_server_without_traces_says_it_takes_no_feedback(tiny_engine):
    refused = _client(tiny_engine, None).post("/v1/feedback", json={"id": "cmpl-1", "rating": "up"})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "feedback_off"
    assert "--traces" in refused.json()["error"]["message"]


def test_ratings_are_stored_once_per_answer_and_counted_for_prometheus(tiny_engine, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    store = TraceStore(tmp_path / "traces.sqlite")
    client = _client(tiny_engine, store)
    first, second, third = (_ask(client, question) for question in ("a?", "b?", "c?"))
    for trace_id, rating in ((first, "down"), (first, "up"), (second, "up"), (third, "down")):
        acknowledged = client.post("/v1/feedback", json={"id": trace_id, "rating": rating})
        assert acknowledged.status_code == 200 and acknowledged.json()["rating"] == rating
    assert sorted(_rows(store.path, "SELECT trace_id, rating FROM feedback")) == sorted(
        [(first, "up"), (second, "up"), (third, "down")])  # a second rating replaces the first
    samples = {name + json.dumps(labels, sort_keys=True): value
               for family in text_string_to_metric_families(client.get("/metrics").text)
               for name, labels, value, *_ in family.samples}
    assert samples['domainbench_feedback_total{"rating": "up"}'] == 2
    assert samples['domainbench_feedback_total{"rating": "down"}'] == 2
    assert samples["domainbench_satisfaction_rate{}"] == pytest.approx(0.5)


def test_the_store_keeps_the_newest_traces_and_drops_older_ones_with_their_feedback(tmp_path, monkeypatch):
    monkeypatch.setattr(traces_module, "PRUNE_EVERY", 5)
    store = TraceStore(tmp_path / "traces.sqlite", max_traces=3)
    for k in range(10):
        store.record(traces_module.Trace(f"cmpl-{k}", "completions", "tiny", None, 0.1, 1, 1, ["stop"], False))
        if k < 2:
            store.add_feedback(f"cmpl-{k}", "up")
    assert _rows(store.path, "SELECT id FROM traces ORDER BY seq") == [(f"cmpl-{k}",) for k in (7, 8, 9)]
    assert _rows(store.path, "SELECT count(*) FROM feedback") == [(0,)]


# ----- kill -9 ---------------------------------------------------------------------------------------

BURST_CLIENTS = 6


def _burst(url: str, acknowledged: list, stop: threading.Event) -> None:
    """Ask and rate, over and over, until the server dies; every 200 on /v1/feedback goes into `acknowledged`."""
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            try:
                answer = http.post(CHAT, json={"messages": [{"role": "user", "content": "Which errno?"}],
                                               "max_tokens": 2})
                trace_id = answer.json()["id"]
                rated = http.post("/v1/feedback", json={"id": trace_id, "rating": "down", "correction": "EIO"})
                if rated.status_code == 200:
                    acknowledged.append(trace_id)
            except (httpx.HTTPError, ValueError, KeyError):
                return  # the server is gone


@pytest.mark.slow
def test_sigkill_mid_burst_loses_no_acknowledged_feedback_and_the_store_opens_cleanly(tmp_path):
    store = tmp_path / "traces.sqlite"
    process, url = start_serve(["--model", "tiny-random-llama", "--traces", str(store), "--trace-text"])
    acknowledged: list[str] = []
    stop = threading.Event()
    clients = [threading.Thread(target=_burst, args=(url, acknowledged, stop), daemon=True)
               for _ in range(BURST_CLIENTS)]
    try:
        for client in clients:
            client.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)  # mid-burst: requests and ratings are in flight
        process.wait(timeout=10)
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
            process.wait()
    for client in clients:
        client.join(timeout=30)
    assert len(acknowledged) >= 20
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in db.execute("SELECT trace_id FROM feedback WHERE rating = 'down'")}
        traced = {row[0] for row in db.execute("SELECT id FROM traces")}
    assert set(acknowledged) <= stored <= traced


@pytest.mark.parametrize(("flags", "says"), [
    (["--trace-text"], "give --traces PATH too"),
    (["--traces", "t.sqlite", "--no-scrub"], "it goes with --trace-text"),
    (["--traces", "t.sqlite", "--engine", "llama.cpp"], "only the in-process engine records traces"),
])
def test_trace_options_that_do_not_fit_together_are_one_line_before_anything_loads(flags, says, capsys):
    from cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--model", "tiny-random-llama", *flags])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and says in error and error.count("\n") == 0
