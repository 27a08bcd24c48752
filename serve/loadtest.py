"""Load-testing an OpenAI-compatible server with a suite's own generation prompts.

At each concurrency level, `requests` streamed completions (`stream: true`, server-sent events)
run in a closed loop, `concurrency` in flight at a time — as `vllm bench serve --max-concurrency`
and guidellm's "concurrent" profile do. At each request rate they run in an open loop instead:
sent at Poisson (or evenly spaced) arrival times from a seeded generator, whatever the server's
pace — `vllm bench serve --request-rate`, guidellm's "poisson" and "constant" profiles — which is
how queueing shows. Streaming is what makes time to first token measurable. Each level reports
latency p50/p95/p99, time to first token p50/p95, output tokens/s, requests/s and the error rate.

httpx rather than a maintained load generator: guidellm pulls in its own stack (pydantic
settings, its own backends and reports) for what is here a thread pool of streamed requests.

Requests are not retried: a load test measures what a user of the endpoint gets, and a failed
request is counted by kind (`connection`, `timeout`, `http_<status>`, `bad_response`, and for a
stream that began with a 200: `stream_error` when it sends an `error` event, `incomplete_stream`
when it ends without `[DONE]`), never raised, so a server that dies mid-test still gives a
complete result.
"""

from __future__ import annotations

import json
import os
import platform
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import httpx

from engines.endpoint import Endpoint, auth_headers
from engines.openai_api import OpenAIEngine
from harness.atomic import write_atomic
from harness.manifest import code_versions
from reports.load_tests import LoadLevel
from stats.descriptive import percentile

# Greedy, as OpenAIEngine generates (llama-cpp-python applies repeat_penalty unless told otherwise).
_GREEDY = {"temperature": 0.0, "top_p": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0,
           "repeat_penalty": 1.0}


@dataclass
class StreamedRequest:
    """One streamed completion: seconds to its first text and to its end, tokens out, or its error kind."""

    latency: float
    ttft: float | None = None
    output_tokens: int = 0
    error: str | None = None


def stream_completion(client: httpx.Client, endpoint: Endpoint, model: str, prompt: str,
                      max_tokens: int) -> StreamedRequest:
    """POST one streamed /completions (a chat endpoint: /chat/completions, the prompt as one user message) and
    time it; failures come back as an error kind, never raised.

    Output tokens: the server's `usage` where it sends one in the stream (vLLM with include_usage),
    else the number of text-bearing events (llama.cpp's server and vLLM send one token per event).
    """
    asked = {"messages": [{"role": "user", "content": prompt}]} if endpoint.chat else {"prompt": prompt}
    body = {"model": model, **asked, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, **_GREEDY}
    started = time.perf_counter()
    ttft, events, usage_tokens = None, 0, None
    try:
        with client.stream("POST", endpoint.route, json=body) as response:
            if response.status_code != 200:
                response.read()
                return StreamedRequest(time.perf_counter() - started, error=f"http_{response.status_code}")
            finished = False
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    finished = True
                    break
                chunk = json.loads(data)
                if chunk.get("error"):  # the server failed after its 200 status line went
                    return StreamedRequest(time.perf_counter() - started, error="stream_error")
                if (chunk.get("usage") or {}).get("completion_tokens") is not None:
                    usage_tokens = int(chunk["usage"]["completion_tokens"])
                if any(_streamed_text(choice) for choice in chunk.get("choices") or []):
                    events += 1
                    ttft = ttft if ttft is not None else time.perf_counter() - started
    except httpx.TimeoutException:
        return StreamedRequest(time.perf_counter() - started, error="timeout")
    except httpx.TransportError:
        return StreamedRequest(time.perf_counter() - started, error="connection")
    except (ValueError, AttributeError, TypeError):
        return StreamedRequest(time.perf_counter() - started, error="bad_response")
    if not finished:
        return StreamedRequest(time.perf_counter() - started, error="incomplete_stream")
    return StreamedRequest(time.perf_counter() - started, ttft, usage_tokens if usage_tokens is not None else events)


def _streamed_text(choice: dict) -> str | None:
    """The text one streamed choice carries: `text` for completions, `delta.content` for chat."""
    return choice.get("text") or (choice.get("delta") or {}).get("content")


def run_level(endpoint: Endpoint, model: str, prompts: list[str], *, concurrency: int, n_requests: int,
              max_tokens: int, timeout: float) -> LoadLevel:
    """`n_requests` streamed completions over `prompts` (cycled), `concurrency` in flight at a time."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    chosen = [prompts[i % len(prompts)] for i in range(n_requests)]
    with httpx.Client(base_url=endpoint.url, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                      limits=limits, headers=auth_headers()) as client, \
            ThreadPoolExecutor(max_workers=concurrency) as pool:
        started = time.perf_counter()
        done = list(pool.map(lambda prompt: stream_completion(client, endpoint, model, prompt, max_tokens), chosen))
        seconds = time.perf_counter() - started
    return summarize_level(concurrency, done, seconds)


def run_levels(engine: OpenAIEngine, prompts: list[str], levels: list[float], *, open_loop: bool, arrivals: str,
               seed: int, n_requests: int, n_warmup: int, max_tokens: int, timeout: float) -> list[LoadLevel]:
    """The warm-up (left out of every figure), then each level in turn: a concurrency (closed loop) or,
    with `open_loop`, a rate per second."""
    target = (engine.client.endpoint, engine.client.model_id, prompts)
    if n_warmup:
        click.echo(f"warm-up: {n_warmup} streamed requests, not counted", err=True)
        run_level(*target, concurrency=1, n_requests=n_warmup, max_tokens=max_tokens, timeout=timeout)
    results = []
    for level in levels:
        if not open_loop:
            click.echo(f"concurrency {level}: {n_requests} streamed requests", err=True)
            results.append(run_level(*target, concurrency=int(level), n_requests=n_requests, max_tokens=max_tokens,
                                     timeout=timeout))
        else:
            click.echo(f"rate {level:g}/s ({arrivals}): {n_requests} streamed requests", err=True)
            results.append(run_rate_level(*target, rate=level, arrivals=arrivals, n_requests=n_requests,
                                          max_tokens=max_tokens, timeout=timeout, seed=seed))
    return results


def arrival_offsets(n_requests: int, rate: float, arrivals: str, seed: int) -> list[float]:
    """Seconds from the level's start at which each request is sent: `rate` per second on average."""
    if arrivals == "constant":
        return [i / rate for i in range(n_requests)]
    generator = random.Random(seed)
    offsets, at = [], 0.0
    for _ in range(n_requests):
        offsets.append(at)
        at += generator.expovariate(rate)
    return offsets


def run_rate_level(endpoint: Endpoint, model: str, prompts: list[str], *, rate: float, arrivals: str,
                   n_requests: int, max_tokens: int, timeout: float, seed: int = 0) -> LoadLevel:
    """`n_requests` streamed completions over `prompts` (cycled), sent at `rate` per second (open loop)."""
    chosen = [prompts[i % len(prompts)] for i in range(n_requests)]
    offsets = arrival_offsets(n_requests, rate, arrivals, seed)
    in_flight, peak, lock = 0, 0, threading.Lock()
    limits = httpx.Limits(max_connections=n_requests, max_keepalive_connections=n_requests)
    with httpx.Client(base_url=endpoint.url, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                      limits=limits, headers=auth_headers()) as client, \
            ThreadPoolExecutor(max_workers=n_requests) as pool:
        started = time.perf_counter()

        def send(prompt: str, offset: float) -> StreamedRequest:
            nonlocal in_flight, peak
            time.sleep(max(0.0, started + offset - time.perf_counter()))
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            try:
                return stream_completion(client, endpoint, model, prompt, max_tokens)
            finally:
                with lock:
                    in_flight -= 1
        done = list(pool.map(send, chosen, offsets))  # one thread per request: nothing waits on the client
        seconds = time.perf_counter() - started
    return summarize_level(peak, done, seconds, rate=rate, arrivals=arrivals)


def summarize_level(concurrency: int, done: list[StreamedRequest], seconds: float, *, rate: float | None = None,
                    arrivals: str | None = None) -> LoadLevel:
    answered = [request for request in done if request.error is None]
    failed = [request.error for request in done if request.error is not None]
    kinds = {kind: failed.count(kind) for kind in sorted(set(failed))}
    latencies = [request.latency for request in answered]
    ttfts = [request.ttft for request in answered if request.ttft is not None]
    tokens = sum(request.output_tokens for request in answered)
    return LoadLevel(
        concurrency=concurrency, requests=len(done), errors=len(failed),
        error_rate=len(failed) / len(done) if done else 0.0, errors_by_kind=kinds, seconds=seconds,
        requests_per_second=len(answered) / seconds if seconds else 0.0,
        output_tokens_per_second=tokens / seconds if seconds else 0.0,
        latency_p50_seconds=percentile(latencies, 0.50), latency_p95_seconds=percentile(latencies, 0.95),
        latency_p99_seconds=percentile(latencies, 0.99), ttft_p50_seconds=percentile(ttfts, 0.50),
        ttft_p95_seconds=percentile(ttfts, 0.95), rate=rate, arrivals=arrivals)


def suite_prompts(suite, task_names: list[str] | None, engine: OpenAIEngine, *, split: str = "test",
                  seed: int | None = None) -> list[str]:
    """The generation prompts of the suite's tasks (few-shot exemplars and chat template as `eval`
    builds them), in suite order; tasks without generation requests give none."""
    from harness.requests import GenerationRequest
    from tasks.evaluate import DEFAULT_FEWSHOT_SEED, build_requests
    from tasks.prompts import fewshot_exemplars
    from tasks.registry import task_module

    seed = DEFAULT_FEWSHOT_SEED if seed is None else seed
    prompts = []
    for task in suite.select(task_names):
        k = task.num_fewshot if task_module(task.type).TAKES_FEWSHOT else 0
        for example in task.examples.get(split, []):
            shots = fewshot_exemplars(task, example, k, seed)
            for request in build_requests(task, example, shots, engine_chat=engine.chat_prompt):
                if isinstance(request, GenerationRequest):
                    prompts.append(request.prompt)
    return prompts


# What servers that do not name their engine put in GET /models' `owned_by`.
_OWNERS = {"vllm": "vLLM", "me": "llama-cpp-python server", "llamacpp": "llama.cpp server"}


def served_engine(model_info: dict) -> str | None:
    """The serving engine, as far as the endpoint's GET /models entry tells."""
    owner = model_info.get("owned_by")
    if owner == "domainbench":
        return f"domainbench serve ({model_info.get('engine') or 'engine not named'})"
    return _OWNERS.get(owner, owner)


def loadtest_record(engine: OpenAIEngine, suite_name: str, tasks: list[str] | None, max_tokens: int,
                    levels: list[LoadLevel], *, configuration: str | None = None,
                    arrival_seed: int | None = None, warmup_requests: int = 0) -> dict:
    """The load test's result file: what was measured, against what, on what machine.

    `configuration`: the run's configuration the endpoint serves, when the result is attached to a run;
    `arrival_seed`: the seed of rate levels' Poisson arrival times; `warmup_requests`: sent before the
    levels and counted in none of them.
    """
    return {
        "kind": "loadtest", "configuration": configuration, "endpoint": engine.client.endpoint.url,
        "route": engine.client.endpoint.route,
        "served_model": engine.client.model_id, "engine": served_engine(engine.client.model_info),
        "server": engine.client.model_info,
        "suite": suite_name, "tasks": tasks, "max_tokens": max_tokens, "streaming": True, "arrival_seed": arrival_seed,
        "warmup_requests": warmup_requests,
        "levels": [asdict(level) for level in levels],
        "machine": {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0], "platform": platform.platform()},
        "versions": {**code_versions("httpx"), "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_loadtest(path: Path, record: dict) -> Path:
    write_atomic(path, json.dumps(record, indent=1, allow_nan=False) + "\n")
    return Path(path)
