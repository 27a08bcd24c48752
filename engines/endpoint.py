"""An OpenAI-compatible server as a model source: its spec, and the one client that talks to it.

`openai+http://HOST:PORT/v1` (optionally `#model-id`) names a server — vLLM, TGI, llama.cpp's
server, Ollama; `openai-chat+http://…` one that offers only chat completions. With OPENAI_API_KEY
set, every request carries it as a bearer token (a server started with `serve --api-key` wants it). The client checks
that it is up (GET /models) before any work, posts completions (or chat completions) with retries,
and keeps what serving cost: requests, the tokens the server counted, latencies, and every
request that failed, by kind.

Connection errors, timeouts, 429 and 5xx are retried with exponential back-off (a 429's
Retry-After is honoured); another 4xx is the request's own fault and is not. A request that still
fails is kept in `errors` rather than raised. Once a request has failed to connect after its
retries the server counts as down and later requests try once, so a dead server ends a task in
seconds instead of minutes of back-off.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from harness.errors import DomainbenchError

ENDPOINT_SCHEME = "openai+"
CHAT_ENDPOINT_SCHEME = "openai-chat+"
_MAX_BACKOFF_SECONDS = 8.0


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server: its base URL (…/v1), optionally which of its models, and whether it
    is spoken to through chat completions only."""

    url: str
    model: str | None = None
    chat: bool = False

    @property
    def route(self) -> str:
        return "/chat/completions" if self.chat else "/completions"


def parse_endpoint(spec: str) -> Endpoint | None:
    """`openai+http://HOST:PORT/v1[#model-id]` (or `openai-chat+…`) as an Endpoint; None for any other model spec."""
    scheme = next((s for s in (ENDPOINT_SCHEME, CHAT_ENDPOINT_SCHEME) if spec.startswith(s)), None)
    if scheme is None:
        return None
    url, _, model = spec[len(scheme):].partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DomainbenchError(f"model {spec}: expected {scheme}http://HOST:PORT/v1 (optionally #model-id)")
    return Endpoint(url.rstrip("/"), model or None, chat=scheme == CHAT_ENDPOINT_SCHEME)


def auth_headers() -> dict[str, str]:
    """`Authorization: Bearer $OPENAI_API_KEY` when that is set (the openai SDK's and lm-eval's variable), else none."""
    key = os.environ.get("OPENAI_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def response_text(body: dict, *, chat: bool) -> str:
    """The generated text of a completions (or chat completions) response body."""
    choice = body["choices"][0]
    text = choice["message"]["content"] if chat else choice["text"]
    if not isinstance(text, str):
        raise TypeError(f"generated text is {type(text).__name__}, not a string")
    return text


@dataclass(frozen=True)
class RequestError:
    """One request that failed after its retries: `connection`, `timeout`, `http_<status>` or `bad_response`."""

    kind: str
    message: str
    request: object


class EndpointClient:
    """POSTs to one server's /completions (or /chat/completions), safe to share between threads, counting what
    it costs."""

    def __init__(self, endpoint: Endpoint, *, concurrency: int = 8, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 0.5):
        """timeout: seconds per attempt; backoff: seconds before the first retry, doubled for each next one."""
        if concurrency < 1 or timeout <= 0 or retries < 0:
            raise DomainbenchError("endpoint: concurrency must be >= 1, timeout > 0 and retries >= 0")
        self.endpoint = endpoint
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self.requests_made = 0
        self.tokens_processed = 0  # prompt + completion tokens by the server's `usage`
        self.latencies: list[float] = []  # seconds per successful request
        self.errors: list[RequestError] = []
        self._lock = threading.Lock()
        self._down = False
        self._client = httpx.Client(base_url=endpoint.url, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                                    limits=httpx.Limits(max_connections=concurrency,
                                                        max_keepalive_connections=concurrency),
                                    headers=auth_headers())
        try:
            self.model_info = self._connect()
            self.model_id = self.model_info["id"]
            self.max_model_len = self.model_info.get("max_model_len")  # vLLM says; others do not
        except DomainbenchError:
            self._client.close()
            raise

    @property
    def fingerprint(self) -> str:
        """sha256 of URL and served model id: what the endpoint says it serves, not its weights."""
        return hashlib.sha256(f"{self.endpoint.url}\n{self.model_id}".encode()).hexdigest()

    def error_counts(self) -> dict[str, int]:
        return dict(Counter(error.kind for error in self.errors))

    def close(self) -> None:
        self._client.close()

    def post(self, request: object, body: dict) -> dict | None:
        """POST the endpoint's route with retries: the response body, or None with the failure kept in `errors`."""
        answer = self.attempt(request, body)
        if isinstance(answer, RequestError):
            self.record(answer)
            return None
        return answer

    def attempt(self, request: object, body: dict) -> dict | RequestError:
        """POST the endpoint's route with retries: the response body, or the failure (not kept)."""
        body = {"model": self.model_id, **body}
        for attempt in range(self.retries + 1):
            started = time.perf_counter()
            try:
                response = self._client.post(self.endpoint.route, json=body)
            except httpx.TimeoutException as exc:
                failure = RequestError("timeout", f"no answer in {self.timeout:g} s ({_describe(exc)})", request)
            except httpx.TransportError as exc:
                failure = RequestError("connection", _describe(exc), request)
            else:
                if response.status_code == 200:
                    return self._succeeded(response, request, time.perf_counter() - started)
                failure = RequestError(f"http_{response.status_code}", response.text[:200], request)
                if response.status_code != 429 and response.status_code < 500:
                    break  # the request itself is wrong: asking again gives the same answer
            if attempt == self.retries or (self._down and failure.kind == "connection"):
                break
            time.sleep(_retry_delay(response if failure.kind == "http_429" else None, self.backoff, attempt))
        self._down = failure.kind == "connection"
        return failure

    def record(self, failure: RequestError, *, counted: bool = False) -> None:
        """Keep a failed request; `counted`: its HTTP exchange was already counted as made."""
        with self._lock:
            self.requests_made += not counted
            self.errors.append(failure)

    def _connect(self) -> dict:
        """The served model's entry in GET /models (its id, and whatever else the server says), or a one-line error."""
        url = self.endpoint.url
        try:
            response = self._client.get("/models", timeout=min(self.timeout, 10.0))
            response.raise_for_status()
            models = response.json()["data"]
        except httpx.HTTPStatusError as exc:
            raise DomainbenchError(f"endpoint {url}: GET /models answered {exc.response.status_code}") from None
        except httpx.HTTPError as exc:
            raise DomainbenchError(f"endpoint {url}: not reachable ({_describe(exc)})") from None
        except (ValueError, KeyError, TypeError):
            raise DomainbenchError(f"endpoint {url}: GET /models is not an OpenAI model list") from None
        ids = [model["id"] for model in models]
        wanted = self.endpoint.model
        if wanted is None and len(ids) != 1:
            raise DomainbenchError(f"endpoint {url} serves {len(ids)} models: name one as {url}#MODEL "
                                   f"({', '.join(ids[:5]) or 'none'})")
        if wanted is not None and wanted not in ids:
            raise DomainbenchError(f"endpoint {url}: no model {wanted!r} (serves {', '.join(ids[:5]) or 'none'})")
        return models[ids.index(wanted or ids[0])]

    def _succeeded(self, response: httpx.Response, request: object, seconds: float) -> dict | RequestError:
        try:
            body = response.json()
            usage = body.get("usage") or {}
            tokens = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
            response_text(body, chat=self.endpoint.chat)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return RequestError("bad_response", response.text[:200], request)
        with self._lock:
            self._down = False
            self.requests_made += 1
            self.tokens_processed += tokens
            self.latencies.append(seconds)
        return body


def _retry_delay(response: httpx.Response | None, backoff: float, attempt: int) -> float:
    """Exponential back-off, or the server's Retry-After (seconds) on 429, at most 8 s."""
    delay = backoff * 2 ** attempt
    if response is not None:
        try:
            delay = float(response.headers.get("retry-after", delay))
        except ValueError:
            pass
    return min(delay, _MAX_BACKOFF_SECONDS)


def _describe(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
