"""`domainbench serve`: an OpenAI-compatible server for exactly the model a run evaluated.

    served = served_from_run(run_dir, "adapter+rag")      # or served_from_spec("smollm2-135m-instruct")
    uvicorn.run(create_app(served), host="127.0.0.1", port=8000)

The model is rebuilt the way the runner built it (harness.runner's loading helpers): the weights
(or a form — a model dir, or a GGUF file run in-process by llama.cpp) from the paths run.yaml
records, the PEFT adapter attached, and for `+rag` the retriever over the run's index in front.
Each artifact's fingerprint on disk must still equal the one the run recorded.

Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health,
GET /metrics (harness.serving_metrics). Decoding is greedy only: sampling parameters are refused
with a 400. `echo` with `logprobs` gives prompt log-probabilities (OpenAI's legacy format, what
harness.openai_engine scores log-likelihood tasks with), so an `openai+http://…` eval against
this server scores every task type.

The engine is not thread-safe, so one thread drives it: generation requests that arrive while it is
busy wait and then run together as one `engine.generate` batch (the engine batches them by stop
strings and budget, as in evaluation); prompt scoring for `logprobs` takes the same lock.
Requests count as in flight while they wait. Retrieval for `+rag` uses the prompt (or the last user
message) as its query, with no per-task exclusions — the server does not know the task.
"""

from __future__ import annotations

import json
import queue
import signal
import threading
import time
import uuid
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from harness.errors import DomainbenchError
from harness.requests import GenerationRequest
from harness.serving_metrics import ServingMetrics

MAX_LOGPROBS = 5
MAX_BATCHED_REQUESTS = 16  # the engine's CPU generation batch
# Greedy decoding is all the engine does: these values (OpenAI's defaults) are accepted, others refused.
_GREEDY_DEFAULTS = {"temperature": (0.0,), "top_p": (1.0,), "n": (1,), "best_of": (1,), "presence_penalty": (0.0,),
                    "frequency_penalty": (0.0,), "repeat_penalty": (1.0,), "top_k": (0, -1, 1)}


@dataclass
class ServedModel:
    """The engine behind the server, its retrieval (for `+rag`) and what it is."""

    name: str
    engine: object
    augmenter: object | None = None
    about: dict = field(default_factory=dict)  # run, configuration, fingerprint: shown on /v1/models
    lock: threading.Lock = field(default_factory=threading.Lock)
    _waiting: queue.Queue = field(default_factory=queue.Queue)
    _worker: threading.Thread | None = None

    def generate(self, requests: list[GenerationRequest]) -> list[str]:
        """engine.generate(requests), batched with whatever other requests are waiting."""
        if self._worker is None:
            with self.lock:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._generate_waiting, daemon=True,
                                                    name="domainbench-generate")
                    self._worker.start()
        answer: Future = Future()
        self._waiting.put((requests, answer))
        return answer.result()

    def _generate_waiting(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < MAX_BATCHED_REQUESTS and not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
            requests = [request for asked, _ in batch for request in asked]
            try:
                with self.lock:
                    texts = iter(self.engine.generate(requests))
            except Exception as exc:  # noqa: BLE001 — each waiting request gets the failure to answer with
                for _, answer in batch:
                    answer.set_exception(exc)
                continue
            for asked, answer in batch:
                answer.set_result([next(texts) for _ in asked])


# ----- building the model --------------------------------------------------------------------------

def served_from_spec(spec: str, *, device: str | None = None, dtype: str | None = None) -> ServedModel:
    """A model spec (builtin name, HF dir, .gguf) served by the in-process engine."""
    from harness.engine import Engine
    from harness.models import load_model, model_fingerprint, resolve_model

    engine = Engine.from_loaded(load_model(spec, device=device, dtype=dtype), progress=False)
    return ServedModel(spec, engine, about={"model_spec": spec, "fingerprint": model_fingerprint(resolve_model(spec))})


def gguf_to_serve(run_dir: Path | None, configuration: str | None, model_spec: str | None) -> Path:
    """The GGUF file behind a `.gguf` model spec, or behind a run's gguf form; one line when there is none."""
    if model_spec is not None:
        path = Path(model_spec).expanduser()
        if path.suffix != ".gguf" or not path.is_file():
            raise DomainbenchError(f"serve --engine llama.cpp: --model {model_spec} is not a .gguf file")
        return path
    from harness.spec import parse_configuration
    from tuning.forms import form_model_path

    config = parse_configuration(configuration)
    if "gguf" not in config.forms or config.rag:
        raise DomainbenchError(f"serve --engine llama.cpp: {configuration} is not a gguf form without retrieval "
                               "(llama.cpp's server cannot put retrieval in front)")
    resolved = _read_run_yaml(Path(run_dir))
    form = (resolved.get("forms") or {}).get(config.model_key)
    if configuration not in resolved["configurations"] or form is None:
        raise DomainbenchError(f"run {run_dir}: did not evaluate configuration {configuration!r}")
    return form_model_path(Path(form["path"]))


def serve_with_llama_cpp(gguf: Path, *, host: str, port: int) -> None:
    """Replace this process with llama.cpp's OpenAI-compatible server on `gguf` (same PID, so stop it by PID).

    `--interrupt_requests false`: by default llama-cpp-python's server cancels a running stream
    when the next request arrives, which a load test would count as short successes.
    """
    import importlib.util
    import os
    import sys

    if importlib.util.find_spec("llama_cpp.server") is None or importlib.util.find_spec("uvicorn") is None:
        raise DomainbenchError("serve --engine llama.cpp: needs llama-cpp-python's server extra "
                               "(pip install 'llama-cpp-python[server]'; make setup installs it)")
    os.execv(sys.executable, [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", host,
                              "--port", str(port), "--n_ctx", "2048", "--interrupt_requests", "false", "--verbose", "false"])


def served_from_run(run_dir: Path, configuration: str, *, device: str | None = None) -> ServedModel:
    """The model (and retriever) a run evaluated as `configuration`, loaded from the artifacts run.yaml records."""
    from harness import runner
    from harness.artifacts import Artifact
    from harness.spec import (
        PROFILE_RAG_CONTEXT_TOKENS,
        FormSettings,
        RagSettings,
        RunSpec,
        parse_configuration,
    )

    resolved = _read_run_yaml(Path(run_dir))
    if configuration not in resolved["configurations"]:
        raise DomainbenchError(f"run {run_dir}: did not evaluate configuration {configuration!r} "
                               f"(it has {', '.join(resolved['configurations'])})")
    values = dict(resolved["spec"])
    rag, forms = RagSettings(**values.pop("rag")), FormSettings(**values.pop("forms"))
    spec = RunSpec(**values, rag=rag, forms=forms)
    config = parse_configuration(configuration)

    def artifacts(block: dict | None) -> dict[str, Artifact]:
        return {name: Artifact(name, Path(a["path"]), a["fingerprint"]) for name, a in (block or {}).items()}

    device = device or resolved["device"]
    prepared = runner.Prepared(
        weights=artifacts(resolved["weights"]), adapters=artifacts(resolved["adapters"]),
        forms=artifacts(resolved["forms"]),
        index=artifacts({"index": resolved["index"]})["index"] if resolved.get("index") else None,
        limit=resolved.get("limit_per_task"), rag_context_tokens=PROFILE_RAG_CONTEXT_TOKENS[resolved["profile"]],
        device=device, dtype=spec.dtype or "auto")
    model_artifact = prepared.forms.get(config.model_key) or prepared.weights[config.weights]
    adapter = prepared.adapters[config.adapter] if config.adapter and not config.forms else None
    _check_unchanged(model_artifact, is_form=config.model_key in prepared.forms)
    # As the runner groups them: a form is its own model; otherwise the weights, with the adapter attached.
    loaded = runner.load_model_key(runner.load_key(config), prepared, spec)
    engine = runner.engine_for(loaded, adapter)
    engine.progress = False
    augmenter = runner.rag_augmenter(prepared, engine.tokenizer, engine, spec) if config.rag else None
    about = {"run": resolved["name"], "configuration": configuration, "fingerprint": model_artifact.fingerprint,
             "adapter_fingerprint": adapter.fingerprint if adapter else None,
             "index_fingerprint": prepared.index.fingerprint if config.rag else None}
    return ServedModel(f"{resolved['name']}/{configuration}", engine, augmenter, about)


def _read_run_yaml(run_dir: Path) -> dict:
    path = run_dir / "run.yaml"
    if not path.is_file():
        raise DomainbenchError(f"run {run_dir}: no run.yaml (not a run directory, or the run never started)")
    return yaml.safe_load(path.read_text())


def _check_unchanged(artifact, *, is_form: bool) -> None:
    """Refuse to serve weights that are no longer the ones the run evaluated."""
    from harness.models import model_fingerprint
    from tuning.forms import form_fingerprint

    if not artifact.path.exists():
        raise DomainbenchError(f"artifact {artifact.name}: {artifact.path} no longer exists")
    now = form_fingerprint(artifact.path) if is_form else model_fingerprint(artifact.path)
    if now != artifact.fingerprint:
        raise DomainbenchError(f"artifact {artifact.name}: {artifact.path} changed since the run evaluated it "
                               f"(fingerprint {now[:12]}, run recorded {artifact.fingerprint[:12]})")


# ----- answering requests ----------------------------------------------------------------------------

class BadRequest(Exception):
    """The request's own fault: answered 400 with one line."""

    def __init__(self, message: str, kind: str = "invalid_request"):
        super().__init__(message)
        self.kind = kind


def check_greedy(body: dict) -> None:
    """Refuse sampling: the engine decodes greedily, and a silently ignored temperature misleads."""
    for name, allowed in _GREEDY_DEFAULTS.items():
        value = body.get(name)
        if value is not None and value not in allowed:
            raise BadRequest(f"{name}={value!r} asks for sampling; this server decodes greedily only "
                             f"(use {name}={allowed[0]!r} or leave it out)", kind="sampling_refused")
    if body.get("stream") and body.get("logprobs") is not None:
        raise BadRequest("stream=true with logprobs is not supported", kind="stream_refused")
    if body.get("logit_bias"):
        raise BadRequest("logit_bias is not supported", kind="invalid_request")


def completion(served: ServedModel, body: dict) -> tuple[dict, dict]:
    """The /v1/completions response for `body`, and the token counts for the metrics."""
    prompts = body.get("prompt")
    prompts = [prompts] if isinstance(prompts, str) else prompts
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("prompt: expected a string or a list of strings")
    max_tokens = _max_tokens(body)
    logprobs = body.get("logprobs")
    if logprobs is not None and (not isinstance(logprobs, int) or not 0 <= logprobs <= MAX_LOGPROBS):
        raise BadRequest(f"logprobs: expected an integer 0..{MAX_LOGPROBS}")
    stop = _stop(body)
    if served.augmenter is not None:
        prompts = [served.augmenter.augment(p, p)[0] for p in prompts]
    texts = _generate(served, prompts, stop, max_tokens)
    tokenizer = served.engine.tokenizer
    choices, prompt_tokens, completion_tokens = [], 0, 0
    for index, (prompt, text) in enumerate(zip(prompts, texts)):
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        text_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        prompt_tokens += len(prompt_ids)
        completion_tokens += len(text_ids)
        choice = {"index": index, "text": prompt + text if body.get("echo") else text, "logprobs": None,
                  "finish_reason": "length" if len(text_ids) >= max_tokens else "stop"}
        if logprobs is not None:
            choice["logprobs"] = token_logprobs(served, prompt_ids, text_ids, top=logprobs,
                                                echo=bool(body.get("echo")))
        choices.append(choice)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": served.name, "choices": choices, "usage": usage}, usage


def chat_completion(served: ServedModel, body: dict) -> tuple[dict, dict]:
    """The /v1/chat/completions response for `body` (the tokenizer's chat template), and the token counts."""
    messages = body.get("messages")
    if not messages or not all(isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role")
                               for m in messages):
        raise BadRequest("messages: expected a list of {role, content} with string content")
    if body.get("logprobs"):
        raise BadRequest("logprobs: not supported on chat completions (use /v1/completions)")
    max_tokens = _max_tokens(body)
    messages = [dict(m) for m in messages]
    if served.augmenter is not None and messages[-1]["role"] == "user":
        content = messages[-1]["content"]
        messages[-1]["content"] = served.augmenter.augment(content, content)[0]
    prompt = _chat_prompt(served.engine, messages)
    text = _generate(served, [prompt], _stop(body), max_tokens)[0]
    tokenizer = served.engine.tokenizer
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    completion_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    choice = {"index": 0, "message": {"role": "assistant", "content": text},
              "finish_reason": "length" if completion_tokens >= max_tokens else "stop"}
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": served.name, "choices": [choice], "usage": usage}, usage


def _chat_prompt(engine, messages: list[dict]) -> str:
    if len(messages) == 1 and messages[0]["role"] == "user":
        return engine.chat_prompt(messages[0]["content"])  # exactly the evaluation's chat path
    if not getattr(engine.tokenizer, "chat_template", None):
        raise BadRequest("this model's tokenizer has no chat template: send a single user message")
    return engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _generate(served: ServedModel, prompts: list[str], stop: tuple[str, ...], max_tokens: int) -> list[str]:
    if max_tokens == 0:
        return [""] * len(prompts)
    return served.generate([GenerationRequest(prompt, stop, max_tokens) for prompt in prompts])


def _max_tokens(body: dict) -> int:
    value = body.get("max_tokens", body.get("max_completion_tokens", 16))
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest("max_tokens: expected a non-negative integer")
    return value


def _stop(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest("stop: expected a string or a list of non-empty strings")
    return tuple(stop)


def token_logprobs(served: ServedModel, prompt_ids: list[int], completion_ids: list[int], *, top: int, echo: bool) -> dict:
    """OpenAI legacy `logprobs` for the completion tokens (and the prompt's too with `echo`).

    The first token has no log-prob (None). Token strings are the decoded text each token adds,
    so `text_offset` counts characters of the decoded prompt + completion.
    """
    engine = served.engine
    if getattr(engine, "model", None) is None:
        raise BadRequest("logprobs: this engine (llama.cpp in-process) gives no log-probabilities", kind="unsupported")
    import torch

    ids = [*prompt_ids, *completion_ids]
    if len(ids) > engine.max_length:
        raise BadRequest(f"prompt + completion is {len(ids)} tokens; this model's context is {engine.max_length}")
    with served.lock, torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([ids], device=engine.device)).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    first = 0 if echo else len(prompt_ids)
    pieces, offsets = _token_pieces(engine.tokenizer, ids)
    tokens, values, tops, text_offset = [], [], [], []
    base = offsets[first] if first < len(offsets) else 0
    for k in range(first, len(ids)):
        tokens.append(pieces[k])
        text_offset.append(offsets[k] - (0 if echo else base))
        if k == 0:
            values.append(None)
            tops.append(None)
            continue
        row = logprobs[k - 1]
        values.append(float(row[ids[k]]))
        best = torch.topk(row, max(top, 1))
        tops.append({engine.tokenizer.decode([int(i)]): float(v) for v, i in zip(best.values, best.indices)})
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": text_offset}


def _token_pieces(tokenizer, ids: list[int]) -> tuple[list[str], list[int]]:
    """The text each token adds to the decoded sequence, and where it starts."""
    pieces, offsets, previous = [], [], ""
    for k in range(len(ids)):
        text = tokenizer.decode(ids[:k + 1])
        offsets.append(len(previous))
        pieces.append(text[len(previous):] if text.startswith(previous) else tokenizer.decode([ids[k]]))
        previous = text
    return pieces, offsets


# ----- the HTTP app ----------------------------------------------------------------------------------

def sse_events(response: dict, usage: dict):
    """A finished response as OpenAI's server-sent events: one chunk per choice, usage, then [DONE].

    The engine decodes a batch at once, so the first chunk carries each choice's whole text: a
    client's time to first token is the whole latency (what it is for this engine) — honest
    rather than a token-by-token replay of text that was already complete.
    """
    for choice in response["choices"]:
        yield f"data: {json.dumps({**response, 'choices': [choice], 'usage': None})}\n\n"
    yield f"data: {json.dumps({**response, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def create_app(served: ServedModel, metrics: ServingMetrics | None = None):
    """The FastAPI app serving `served`; blocking model work runs in the thread pool."""
    metrics = metrics or ServingMetrics()
    app = FastAPI(title=f"domainbench serve: {served.name}")

    def refused(status: int, message: str, kind: str) -> JSONResponse:
        metrics.errors.labels(kind).inc()
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error" if status == 400
                                       else "server_error", "code": kind}}, status_code=status)

    async def answer(request: Request, route: str, build) -> JSONResponse:
        with metrics.request(route) as outcome:
            started = time.perf_counter()
            try:
                body = await request.json()
            except ValueError as exc:
                outcome["status"] = 400
                return refused(400, f"body is not JSON: {exc}".splitlines()[0], "invalid_json")
            try:
                if not isinstance(body, dict):
                    raise BadRequest("expected a JSON object")
                check_greedy(body)
                response, usage = await run_in_threadpool(build, served, body)
            except BadRequest as exc:
                outcome["status"] = 400
                return refused(400, str(exc), exc.kind)
            except Exception as exc:  # noqa: BLE001 — an engine failure is answered 500 and counted by type, not dropped
                outcome["status"] = 500
                return refused(500, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                               f"engine_{type(exc).__name__}")
            seconds = time.perf_counter() - started
            metrics.generated(route, prompt_tokens=usage["prompt_tokens"],
                              completion_tokens=usage["completion_tokens"], seconds=seconds,
                              first_token_seconds=seconds)
            if body.get("stream"):
                return StreamingResponse(sse_events(response, usage), media_type="text/event-stream")
            return JSONResponse(response)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await answer(request, "completions", completion)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await answer(request, "chat_completions", chat_completion)

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": served.name, "object": "model", "owned_by": "domainbench",
                                            "max_model_len": served.engine.max_length, **served.about}]}

    @app.get("/health")
    def health():
        return {"status": "ok", "model": served.name}

    @app.get("/metrics")
    def prometheus():
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def serve(served: ServedModel, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the server until SIGINT/SIGTERM: open requests finish, the port is released, and it returns."""
    config = uvicorn.Config(create_app(served), host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=30)
    _Server(config).run()


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self):
        # uvicorn (0.29+) raises the signal again after its graceful shutdown, so a SIGTERM'd
        # server would die of it (exit 143); a clean stop on request is exit 0.
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
