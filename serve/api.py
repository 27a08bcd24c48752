"""The HTTP face of `domainbench serve`: OpenAI-compatible routes for a ServedModel.

Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /v1/models/{id},
GET /health, GET /metrics (serve.metrics), and POST /v1/feedback (ratings, kept with a trace store,
serve.traces). What a request may ask and the answer's body are serve/completions.py's; streaming
(server-sent events) is serve/stream.py's.
Decoding is greedy only. `echo` with `logprobs` gives prompt log-probabilities (OpenAI's legacy
format, what engines.openai_api and lm-evaluation-harness score log-likelihood with), so an
`openai+http://…` eval against this server scores every task type.

Safe to expose: with an API key every route but /health wants `Authorization: Bearer KEY` (401
otherwise); the body size, prompts per request, prompt + max_tokens against the context and the
requests in flight are capped, each refusal a 4xx naming the limit. A request whose `model` is not
the served one is a 404 `model_not_found`, as vLLM answers it. A client that disconnects before
its answer stops its generation (the whole batch stops once all of its requests are abandoned, a
queued one never starts) and is counted with status 499, nginx's "client closed request".

With a trace store every answered request is recorded before its answer goes out (a stream's when
it ends); the answer's `id` is its trace id, also sent as the X-Trace-Id header, and the id a
user's rating names on /v1/feedback.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sqlite3
import threading
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from serve.completions import (
    Abandoned,
    Refused,
    ShuttingDown,
    chat_completion,
    check_greedy,
    completion,
    response_id,
)
from serve.metrics import ServingMetrics
from serve.stream import client_gone, error_body, sse_events, start_streaming
from serve.traces import RATINGS, Trace, TraceStore, UnknownTrace, configuration_fingerprint

if TYPE_CHECKING:
    from serve.model import ServedModel

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request whose client went away first
TRACE_HEADER = "X-Trace-Id"
MAX_FEEDBACK_BYTES = 64 * 1024  # a rating with a correction and a comment; anything larger is not feedback
FEEDBACK_FIELDS = ("id", "rating", "correction", "comment")


def error_response(status: int, message: str, kind: str, error_type: str | None = None) -> JSONResponse:
    """OpenAI's error shape: {"error": {message, type, param, code}}."""
    error_type = error_type or ("invalid_request_error" if status < 500 else "server_error")
    return JSONResponse({"error": {"message": message, "type": error_type, "param": None, "code": kind}},
                        status_code=status)


class ApiKeyCheck:
    """ASGI middleware: every route but /health wants `Authorization: Bearer <key>` (a 401 otherwise).

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which would sit between a stream and the
    client's disconnect.
    """

    def __init__(self, app, *, key: str, metrics: ServingMetrics):
        self.app, self.expected, self.metrics = app, f"Bearer {key}".encode(), metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/health":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                self.metrics.errors.labels("invalid_api_key").inc()
                refusal = error_response(401, "missing or wrong API key: send Authorization: Bearer <key>",
                                         "invalid_api_key")
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_body(request: Request, limit: int) -> dict:
    """The request's JSON object, read no further than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(f"body is {declared} bytes; this server takes at most {limit}", "body_too_large", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(f"body is over {limit} bytes, this server's limit", "body_too_large", 413)
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise Refused(f"body is not JSON: {exc}".splitlines()[0], "invalid_json") from None
    if not isinstance(body, dict):
        raise Refused("expected a JSON object")
    return body


def check_model(served: ServedModel, body: dict) -> None:
    """A request naming another model is refused, as vLLM refuses it (no model named: the served one)."""
    model = body.get("model")
    if model is not None and model != served.name:
        raise Refused(f"The model `{model}` does not exist (this server serves `{served.name}`).",
                      "model_not_found", 404)


async def unless_gone(receive, abandoned: threading.Event, work):
    """`await work`, unless the client disconnects first: then `abandoned` is set and Abandoned raised."""
    work = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(client_gone(receive))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not work.done():
        abandoned.set()
        work.add_done_callback(lambda done: done.cancelled() or done.exception())  # its outcome has no reader
        raise Abandoned()
    return work.result()


def model_card(served: ServedModel) -> dict:
    return {"id": served.name, "object": "model", "owned_by": "domainbench", "max_model_len": served.engine.max_length,
            **served.about}


def answer_trace(served: ServedModel, route: str, body: dict, response: dict, usage: dict, seconds: float, *,
                 streamed: bool) -> Trace:
    """The trace of one answered request (its text kept or dropped by the store)."""
    chat = route == "chat_completions"
    return Trace(id=response["id"], route=route, model=served.name,
                 configuration_fingerprint=configuration_fingerprint(served.about), latency_seconds=seconds,
                 prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
                 finish_reasons=[choice["finish_reason"] for choice in response["choices"]], streamed=streamed,
                 prompt=body.get("messages") if chat else body.get("prompt"),
                 answers=[choice["message"]["content"] if chat else choice["text"] for choice in response["choices"]])


def parse_feedback(body: dict) -> tuple[str, str, str | None, str | None]:
    """(id, rating, correction, comment) of a feedback body, or Refused naming the first field that is wrong."""
    unknown = sorted(set(body) - set(FEEDBACK_FIELDS))
    if unknown:
        raise Refused(f"{unknown[0]}: unknown field; feedback takes {', '.join(FEEDBACK_FIELDS)}")
    if not isinstance(body.get("id"), str) or not body["id"]:
        raise Refused("id: expected the `id` of an answer this server gave (a non-empty string)")
    if body.get("rating") not in RATINGS:
        raise Refused(f"rating: expected {' or '.join(map(repr, RATINGS))}, got {body.get('rating')!r}")
    for name in ("correction", "comment"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise Refused(f"{name}: expected a string")
    return body["id"], body["rating"], body.get("correction"), body.get("comment")


def create_app(served: ServedModel, metrics: ServingMetrics | None = None, *, api_key: str | None = None,
               traces: TraceStore | None = None):
    """The FastAPI app serving `served`; blocking model work runs in threads; answers traced into `traces`."""
    metrics = metrics or ServingMetrics()
    limits = served.limits
    app = FastAPI(title=f"domainbench serve: {served.name}")
    if api_key:
        app.add_middleware(ApiKeyCheck, key=api_key, metrics=metrics)
    busy = [0]  # requests in flight: the event loop's own count, so no lock

    def refused(status: int, message: str, kind: str) -> JSONResponse:
        metrics.errors.labels(kind).inc()
        error_type = "NotFoundError" if kind == "model_not_found" else None
        return error_response(status, message, kind, error_type)

    def record(trace: Trace) -> None:
        """Store an answer's trace; a store that fails (disk full, say) costs the trace, counted, not the answer."""
        try:
            traces.record(trace)
        except sqlite3.Error:
            metrics.errors.labels("trace_not_recorded").inc()

    async def answer(request: Request, route: str, build) -> Response:
        accounting = ExitStack()
        outcome = accounting.enter_context(metrics.request(route))
        started = time.perf_counter()
        streaming = False
        try:
            try:
                if busy[0] >= limits.max_concurrent:
                    raise Refused(f"{busy[0]} requests in flight, this server's limit: retry later",
                                  "too_many_requests", 429)
                busy[0] += 1
                accounting.callback(lambda: busy.__setitem__(0, busy[0] - 1))
                body = await read_body(request, limits.max_body_bytes)
                check_model(served, body)
                check_greedy(body)
                abandoned = threading.Event()
                if body.get("stream"):
                    events = start_streaming(served, body, build, abandoned)
                    first = await unless_gone(request.receive, abandoned, events.get())
                    if first[0] == "error":  # a bad request fails before its first token
                        raise first[1]
                    streaming = True
                    answer_id = response_id(chat=route == "chat_completions")
                    return StreamingResponse(streamed(request, route, body, first, events, abandoned, started,
                                                      outcome, accounting, answer_id),
                                             media_type="text/event-stream", headers={TRACE_HEADER: answer_id})
                response, usage = await unless_gone(request.receive, abandoned,
                                                    run_in_threadpool(build, served, body, None, abandoned))
            except Refused as exc:
                outcome["status"] = exc.status
                refusal = refused(exc.status, str(exc), exc.kind)
                if exc.status == 429:
                    refusal.headers["Retry-After"] = "1"
                return refusal
            except Abandoned:
                outcome["status"] = CLIENT_CLOSED_REQUEST
                return Response(status_code=CLIENT_CLOSED_REQUEST)  # nobody reads it
            except ShuttingDown:
                outcome["status"] = 503
                return refused(503, "the server is shutting down and stopped generating", "shutting_down")
            except Exception as exc:  # noqa: BLE001 — an engine failure is answered 500 and counted by type, not dropped
                outcome["status"] = 500
                error = error_body(exc)
                return refused(500, error["message"], error["code"])
            seconds = time.perf_counter() - started
            metrics.generated(route, prompt_tokens=usage["prompt_tokens"],
                              completion_tokens=usage["completion_tokens"], seconds=seconds,
                              first_token_seconds=seconds)
            if traces is not None:
                await run_in_threadpool(record, answer_trace(served, route, body, response, usage, seconds,
                                                             streamed=False))
            return JSONResponse(response, headers={TRACE_HEADER: response["id"]})
        finally:
            if not streaming:  # a stream closes its own accounting when it ends
                accounting.close()

    def streamed(request: Request, route: str, body: dict, first: tuple, events: asyncio.Queue,
                 abandoned: threading.Event, started: float, outcome: dict, accounting: ExitStack, answer_id: str):
        first_text: list[float] = []

        def on_first_text() -> None:
            if not first_text:
                first_text.append(time.perf_counter() - started)

        def on_end(usage: dict | None, failure: Exception | None, response: dict | None) -> None:
            seconds = time.perf_counter() - started
            if isinstance(failure, Abandoned):
                outcome["status"] = CLIENT_CLOSED_REQUEST
            elif failure is not None:
                outcome["status"] = 503 if isinstance(failure, ShuttingDown) else 500
                metrics.errors.labels(error_body(failure)["code"]).inc()
            elif usage is not None:
                metrics.generated(route, prompt_tokens=usage["prompt_tokens"],
                                  completion_tokens=usage["completion_tokens"], seconds=seconds,
                                  first_token_seconds=first_text[0] if first_text else seconds)
                if traces is not None:  # the stream's last chunk is out: recorded here, on the loop (one short commit)
                    record(answer_trace(served, route, body, {**response, "id": answer_id}, usage, seconds,
                                        streamed=True))
            accounting.close()
        return sse_events(served, body, first, events, chat=route == "chat_completions", receive=request.receive,
                          abandoned=abandoned, on_first_text=on_first_text, on_end=on_end, answer_id=answer_id)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await answer(request, "completions", completion)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await answer(request, "chat_completions", chat_completion)

    @app.post("/v1/feedback")
    async def feedback(request: Request):
        """A user's rating of one answer: `{"id", "rating", "correction"?, "comment"?}`.

        `id` is the answer's own id (its trace id, also its X-Trace-Id header); `rating` is "up" (the
        answer served the user) or "down"; `correction` is the answer that should have been given (what
        `suite add-from-feedback` turns into a test example) and `comment` free text, both optional
        strings. A second rating of one answer replaces the first. Answered 200 with the stored rating
        only once it is committed; 400 for a wrong field (named), 404 `trace_not_found` for an id the
        store does not hold, 413 past 64 KiB, 404 `feedback_off` when the server keeps no traces, 503
        `feedback_not_stored` when the store failed to commit it.
        """
        with metrics.request("feedback") as outcome:
            try:
                if traces is None:
                    raise Refused("this server keeps no traces, so it takes no feedback: start it with --traces PATH",
                                  "feedback_off", 404)
                trace_id, rating, correction, comment = parse_feedback(await read_body(request, MAX_FEEDBACK_BYTES))
                try:
                    rated_at = await run_in_threadpool(traces.add_feedback, trace_id, rating, correction=correction,
                                                       comment=comment)
                except UnknownTrace:
                    raise Refused(f"id: no answer {trace_id!r} in this server's traces", "trace_not_found",
                                  404) from None
                except sqlite3.Error as exc:  # not acknowledged, so the client knows to send it again
                    raise Refused(f"the rating was not stored ({exc}): retry later", "feedback_not_stored",
                                  503) from None
            except Refused as exc:
                outcome["status"] = exc.status
                return refused(exc.status, str(exc), exc.kind)
            metrics.rated(rating)
            return {"id": trace_id, "object": "feedback", "rating": rating, "created": int(rated_at)}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [model_card(served)]}

    @app.get("/v1/models/{model_id:path}")
    def model(model_id: str):
        if model_id != served.name:
            return refused(404, f"The model `{model_id}` does not exist (this server serves `{served.name}`).",
                           "model_not_found")
        return model_card(served)

    @app.get("/health")
    def health():
        return {"status": "ok", "model": served.name}

    @app.get("/metrics")
    def prometheus():
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
