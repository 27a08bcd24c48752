"""A fake OpenAI-compatible endpoint for the endpoint engine's tests (`fake_server` in conftest.py)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    """An OpenAI-compatible server on 127.0.0.1 that answers completions from `answer(body)`.

    `answer` returns (status, json); the server records every completions body it received.
    """

    def __init__(self, answer):
        self.answer, self.bodies = answer, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.bodies.append(body)
                self._send(*fake.answer(body))

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def completion(text, usage=(5, 3), logprobs=None):
    return 200, {"choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}}


def character_model(body):
    """A fake model whose tokens are characters, each with log-prob -1; it always generates "!"."""
    if not body.get("echo"):
        return completion("!", logprobs={"tokens": ["!"], "text_offset": [0], "token_logprobs": [-1.0],
                                         "top_logprobs": [{"!": -1.0}]})
    text = body["prompt"] + "!"
    logprobs = [None] + [-1.0] * (len(text) - 1)
    return completion(text, logprobs={"tokens": list(text), "text_offset": list(range(len(text))),
                                      "token_logprobs": logprobs, "top_logprobs": [{"!": -1.0}] * len(text)},
                      usage=(len(text) - 1, 1))
