"""Server-sent events for `domainbench serve`: a streamed request's text as the engine decodes it.

The request is built in a thread of its own; its tokens, then its end or failure, reach the event
loop on an asyncio queue, so a stream whose client has gone stops waiting at once. Text is released
through engines.stops.StreamedAnswer, so the chunks join into exactly the unstreamed answer. After
the last text: a chunk with the usage when `stream_options.include_usage` asked for it (OpenAI's
rule: that chunk's `choices` is empty, and every other chunk carries `usage: null`), then [DONE].
An engine failure mid-stream (the status line is long sent) is an `error` event.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import TYPE_CHECKING

from engines.stops import StreamedAnswer
from serve.completions import Abandoned, stop_strings

if TYPE_CHECKING:
    from serve.model import ServedModel


def start_streaming(served: ServedModel, body: dict, build, abandoned: threading.Event) -> asyncio.Queue:
    """Run `build` in a thread of its own; its tokens, then its end or failure, arrive on the queue returned.

    Events: ("token", choice index, token id), ("done", response, usage), ("error", exception).
    """
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def put(event: tuple) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the event loop has closed: the server stopped, nobody is listening
            pass

    def run() -> None:
        try:
            put(("done", *build(served, body, lambda index, token: put(("token", index, token)), abandoned)))
        except Exception as exc:  # noqa: BLE001 — handed to the stream, which answers with it
            put(("error", exc))
    threading.Thread(target=run, daemon=True, name="domainbench-stream").start()
    return events


async def client_gone(receive) -> None:
    """Return once the client has disconnected (the request's body already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def sse_events(served: ServedModel, body: dict, first: tuple, events: asyncio.Queue, *, chat: bool,
                     receive, abandoned: threading.Event, on_first_text, on_end, answer_id: str):
    """OpenAI's server-sent events for a streamed request, a chunk as each piece of text becomes final.

    `on_first_text()` marks the time to first token; `on_end(usage or None, exception or None, response or None)`
    closes the request's accounting: Abandoned when the client went away (its generation is told to stop).
    Every chunk carries `answer_id`.
    """
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    stops = stop_strings(body)
    answers: dict[int, StreamedAnswer] = {}
    meta = {"id": answer_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": served.name}
    opened: set[int] = set()  # choices whose first chunk (the one naming the role) has gone

    def answer_of(index: int) -> StreamedAnswer:
        if index not in answers:
            answers[index] = StreamedAnswer(served.engine.tokenizer, stops)
        return answers[index]

    def data(choices: list, usage: dict | None = None) -> str:
        payload = {**meta, "choices": choices, **({"usage": usage} if include_usage else {})}
        return f"data: {json.dumps(payload)}\n\n"

    def chunk(index: int, text: str, finish_reason: str | None) -> str:
        if chat:
            delta = {"content": text} if text else {}
            if index not in opened:
                delta = {"role": "assistant", **delta}
            choice = {"index": index, "delta": delta, "finish_reason": finish_reason}
        else:
            choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
        opened.add(index)
        return data([choice])

    watcher = asyncio.ensure_future(client_gone(receive))
    watcher.add_done_callback(lambda done: done.cancelled() or events.put_nowait(("gone",)))
    event, usage, failure, response = first, None, None, None
    try:
        while event[0] == "token":
            _, index, token = event
            piece = answer_of(index).add(token)
            if piece:
                on_first_text()
                yield chunk(index, piece, None)
            event = await events.get()
        if event[0] == "gone":
            failure = Abandoned()
            return
        if event[0] == "error":
            failure = event[1]
            yield f"data: {json.dumps({'error': error_body(failure)})}\n\n"
        else:
            response, usage = event[1], event[2]
            for choice in response["choices"]:
                text = choice["message"]["content"] if chat else choice["text"]
                rest = answer_of(choice["index"]).finish(text)
                if rest:
                    on_first_text()
                yield chunk(choice["index"], rest, choice["finish_reason"])
            if include_usage:
                yield data([], usage)
        yield "data: [DONE]\n\n"
    finally:
        watcher.cancel()
        if usage is None and failure is None:  # cancelled by the server when the client went away
            failure = Abandoned()
        if isinstance(failure, Abandoned):
            abandoned.set()
        on_end(usage, failure, response)


def error_body(exc: Exception) -> dict:
    """A failure as OpenAI's error object: one line, and a code naming the exception type."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    return {"message": f"{type(exc).__name__}: {message}", "type": "server_error", "param": None,
            "code": f"engine_{type(exc).__name__}"}
