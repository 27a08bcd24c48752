"""The HTTP face of `domainbench serve`: OpenAI-compatible request handling for a ServedModel.

Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health,
GET /metrics (harness.serving_metrics). Decoding is greedy only: sampling parameters are refused
with a 400. `echo` with `logprobs` gives prompt log-probabilities (OpenAI's legacy format, what
harness.openai_engine scores log-likelihood tasks with), so an `openai+http://…` eval against
this server scores every task type. `stream` sends server-sent events as the engine decodes (a
request's time to first token is when its first final text leaves). harness/serving.py builds the
ServedModel and runs uvicorn.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from contextlib import ExitStack
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from harness.requests import GenerationRequest, TokenCallback
from harness.serving_metrics import ServingMetrics
from harness.stops import StreamedAnswer

if TYPE_CHECKING:
    from harness.serving import ServedModel

MAX_LOGPROBS = 5
# Greedy decoding is all the engine does: these values (OpenAI's defaults) are accepted, others refused.
_GREEDY_DEFAULTS = {"temperature": (0.0,), "top_p": (1.0,), "n": (1,), "best_of": (1,), "presence_penalty": (0.0,),
                    "frequency_penalty": (0.0,), "repeat_penalty": (1.0,), "top_k": (0, -1, 1)}


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
    if body.get("stream") and (body.get("logprobs") is not None or body.get("echo")):
        raise BadRequest("stream=true with logprobs or echo is not supported", kind="stream_refused")
    if body.get("logit_bias"):
        raise BadRequest("logit_bias is not supported", kind="invalid_request")


def completion(served: ServedModel, body: dict, on_token: TokenCallback | None = None) -> tuple[dict, dict]:
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
    texts = _generate(served, prompts, stop, max_tokens, on_token)
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


def chat_completion(served: ServedModel, body: dict, on_token: TokenCallback | None = None) -> tuple[dict, dict]:
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
    text = _generate(served, [prompt], _stop(body), max_tokens, on_token)[0]
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


def _generate(served: ServedModel, prompts: list[str], stop: tuple[str, ...], max_tokens: int,
              on_token: TokenCallback | None) -> list[str]:
    if max_tokens == 0:
        return [""] * len(prompts)
    return served.generate([GenerationRequest(prompt, stop, max_tokens) for prompt in prompts], on_token)


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

def start_streaming(served: ServedModel, body: dict, build) -> queue.Queue:
    """Run `build` in a thread of its own; its tokens, then its end or failure, arrive on the queue returned.

    Events: ("token", choice index, token id), ("done", response, usage), ("error", exception).
    """
    events: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            events.put(("done", *build(served, body, lambda index, token: events.put(("token", index, token)))))
        except Exception as exc:  # noqa: BLE001 — handed to the stream, which answers with it
            events.put(("error", exc))
    threading.Thread(target=run, daemon=True, name="domainbench-stream").start()
    return events


def sse_events(served: ServedModel, body: dict, first: tuple, events: queue.Queue, *, chat: bool,
               on_first_text, on_end):
    """OpenAI's server-sent events for a streamed request, a chunk as each piece of text becomes final.

    Text is released through harness.stops.StreamedAnswer, so the chunks join into exactly the
    unstreamed answer. After the last text: a chunk with the usage, then [DONE]. An engine failure
    mid-stream (the status line is long sent) is an `error` event. `on_first_text()` marks the time
    to first token; `on_end(usage or None, exception or None)` closes the request's accounting.
    """
    stops = _stop(body)
    answers: dict[int, StreamedAnswer] = {}
    meta = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": served.name}
    opened: set[int] = set()  # choices whose first chunk (the one naming the role) has gone

    def answer_of(index: int) -> StreamedAnswer:
        if index not in answers:
            answers[index] = StreamedAnswer(served.engine.tokenizer, stops)
        return answers[index]

    def chunk(index: int, text: str, finish_reason: str | None) -> str:
        if chat:
            delta = {"content": text} if text else {}
            if index not in opened:
                delta = {"role": "assistant", **delta}
            choice = {"index": index, "delta": delta, "finish_reason": finish_reason}
        else:
            choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
        opened.add(index)
        return f"data: {json.dumps({**meta, 'choices': [choice], 'usage': None})}\n\n"

    event, usage, failure = first, None, None
    try:
        while event[0] == "token":
            _, index, token = event
            piece = answer_of(index).add(token)
            if piece:
                on_first_text()
                yield chunk(index, piece, None)
            event = events.get()
        if event[0] == "error":
            failure = event[1]
            yield f"data: {json.dumps({'error': _error_body(failure)})}\n\n"
        else:
            response, usage = event[1], event[2]
            for choice in response["choices"]:
                text = choice["message"]["content"] if chat else choice["text"]
                rest = answer_of(choice["index"]).finish(text)
                if rest:
                    on_first_text()
                yield chunk(choice["index"], rest, choice["finish_reason"])
            yield f"data: {json.dumps({**meta, 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        on_end(usage, failure)


def _error_body(exc: Exception) -> dict:
    """An engine failure as OpenAI's error object: one line, and a code naming the exception type."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    return {"message": f"{type(exc).__name__}: {message}", "type": "server_error",
            "code": f"engine_{type(exc).__name__}"}


def create_app(served: ServedModel, metrics: ServingMetrics | None = None):
    """The FastAPI app serving `served`; blocking model work runs in the thread pool."""
    metrics = metrics or ServingMetrics()
    app = FastAPI(title=f"domainbench serve: {served.name}")

    def refused(status: int, message: str, kind: str) -> JSONResponse:
        metrics.errors.labels(kind).inc()
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error" if status == 400
                                       else "server_error", "code": kind}}, status_code=status)

    async def answer(request: Request, route: str, build) -> Response:
        accounting = ExitStack()
        outcome = accounting.enter_context(metrics.request(route))
        started = time.perf_counter()
        streaming = False
        try:
            try:
                body = await request.json()
            except ValueError as exc:
                outcome["status"] = 400
                return refused(400, f"body is not JSON: {exc}".splitlines()[0], "invalid_json")
            try:
                if not isinstance(body, dict):
                    raise BadRequest("expected a JSON object")
                check_greedy(body)
                if body.get("stream"):
                    events = start_streaming(served, body, build)
                    first = await run_in_threadpool(events.get)  # a bad request fails before its first token
                    if first[0] == "error":
                        raise first[1]
                    streaming = True
                    return StreamingResponse(streamed(route, body, first, events, started, outcome, accounting),
                                             media_type="text/event-stream")
                response, usage = await run_in_threadpool(build, served, body)
            except BadRequest as exc:
                outcome["status"] = 400
                return refused(400, str(exc), exc.kind)
            except Exception as exc:  # noqa: BLE001 — an engine failure is answered 500 and counted by type, not dropped
                outcome["status"] = 500
                error = _error_body(exc)
                return refused(500, error["message"], error["code"])
            seconds = time.perf_counter() - started
            metrics.generated(route, prompt_tokens=usage["prompt_tokens"],
                              completion_tokens=usage["completion_tokens"], seconds=seconds,
                              first_token_seconds=seconds)
            return JSONResponse(response)
        finally:
            if not streaming:  # a stream closes its own accounting when it ends
                accounting.close()

    def streamed(route: str, body: dict, first: tuple, events: queue.Queue, started: float, outcome: dict,
                 accounting: ExitStack):
        first_text: list[float] = []

        def on_first_text() -> None:
            if not first_text:
                first_text.append(time.perf_counter() - started)

        def on_end(usage: dict | None, failure: Exception | None) -> None:
            seconds = time.perf_counter() - started
            if failure is not None:
                outcome["status"] = 500
                metrics.errors.labels(_error_body(failure)["code"]).inc()
            elif usage is not None:
                metrics.generated(route, prompt_tokens=usage["prompt_tokens"],
                                  completion_tokens=usage["completion_tokens"], seconds=seconds,
                                  first_token_seconds=first_text[0] if first_text else seconds)
            accounting.close()
        return sse_events(served, body, first, events, chat=route == "chat_completions",
                          on_first_text=on_first_text, on_end=on_end)

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
