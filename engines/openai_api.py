"""The engine's three request types against an OpenAI-compatible server (vLLM, llama.cpp, TGI, Ollama).

A model spec `openai+http://HOST:PORT/v1` (optionally `#model-id`) names such a server
(engines.endpoint); the engine speaks `/v1/completions` to it, so a deployed model is evaluated
like a local one. `openai-chat+http://…` names a server that offers only `/v1/chat/completions`:
each prompt goes as one user message through the server's own chat template (so no local template
and no prefix token), generation only; log-likelihood tasks are `NotScorable` there.

- Generation: greedy (temperature 0, no penalties), `max_new_tokens` at most. Stop strings are
  cut here with `cut_at_stop`, as `HFEngine` cuts them, and not sent: servers stop at a stop
  string even before the answer has begun, which would turn an instruct model's leading newline
  into an empty answer.
- Log-likelihood and rolling log-likelihood: from prompt log-probabilities (`echo` with
  `logprobs=1`, lm-evaluation-harness's way). The server tokenizes; the continuation is the tail of
  the echoed tokens that covers the continuation's characters. Before the first scoring request
  the engine checks once that the server gives them, and gives them for the right positions: the
  echoed log-prob of a token must equal the one the server reports when it generates that same
  token. Where it does not, `NotScorable` says why (Ollama and TGI give no prompt log-probs;
  llama-cpp-python's server shifts them by one position unless the prompt opens with the
  model's BOS token, which the engine sends when it has the tokenizer).
- A local tokenizer (optional) gives what `HFEngine` takes from its own: the chat template, the
  prefix token (BOS, else EOS) that scored text is conditioned on, and token counts for rolling
  windows and for keeping prompts within `max_length`. Without one, prompts go unchanged.
- Requests run `concurrency` at a time, retried as engines.endpoint says. A request that still
  fails is recorded in `errors` and answered with a marker rather than ending the task:
  generation with `FAILED_GENERATION` (an empty text), log-likelihood with `FAILED_LOGLIKELIHOOD`
  (NaN). Both are missing data, not wrong answers: `evaluate_task` leaves their examples out of
  the metrics and names them (`harness.requests.is_failed_response`).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor, as_completed

from engines.endpoint import (
    Endpoint,
    EndpointClient,
    RequestError,
    parse_endpoint,
    response_text,
)
from engines.registry import EngineOptions
from engines.scoring import rolling_windows
from engines.stops import cut_at_stop
from engines.tokens import count_tokens
from harness.errors import DomainbenchError
from harness.progress import counting_bar
from harness.requests import (
    FAILED_GENERATION,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    RollingRequest,
    TokenCallback,
)

DEFAULT_MAX_LENGTH = 2048  # as engines.hf's, for servers that do not report their context
FAILED_LOGLIKELIHOOD = Loglikelihood(math.nan, False, 0)
# Greedy, with the penalties off: llama-cpp-python's server applies repeat_penalty 1.1 unless told
# otherwise (even at temperature 0); servers that do not know the field ignore it.
_GREEDY = {"temperature": 0.0, "top_p": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0,
           "repeat_penalty": 1.0}
_PROBE_TEXT = "The capital of France is"
# The probe compares two log-probs of one token computed in different batches: equal up to
# kernel noise (measured 0 on llama-cpp-python), while a shifted position costs whole nats.
_PROBE_TOLERANCE = 0.05


class NotScorable(DomainbenchError):
    """The endpoint cannot answer log-likelihood requests (it gives no usable prompt log-probs)."""


class _ProbeFailed(Exception):
    def __init__(self, error: RequestError):
        self.error = error


class OpenAIEngine:
    """Runs the three request types on an OpenAI-compatible server, `concurrency` requests at a time."""

    fingerprint: str | None = None  # the endpoint URL and served model (EndpointClient.fingerprint)

    def __init__(self, endpoint: Endpoint | str, tokenizer=None, *, concurrency: int = 8, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.5, max_length: int | None = None, progress: bool = True):
        """Connects at once (a one-line DomainbenchError where the server is down). tokenizer: the served
        model's Hugging Face tokenizer, where one is at hand; timeout: seconds per request attempt;
        backoff: seconds before the first retry, doubled for each next one."""
        spec = parse_endpoint(endpoint) if isinstance(endpoint, str) else endpoint
        if spec is None:
            raise DomainbenchError(f"model {endpoint}: not an endpoint spec (openai+http://HOST:PORT/v1)")
        self.client = EndpointClient(spec, concurrency=concurrency, timeout=timeout, retries=retries, backoff=backoff)
        self.fingerprint = self.client.fingerprint
        self.tokenizer = tokenizer
        self.progress = progress
        self.device = "endpoint"
        self.dtype = None  # servers do not say what their weights compute in
        self.max_batch_tokens = None  # batching is the server's business
        self.max_length = max_length or self.client.max_model_len or DEFAULT_MAX_LENGTH
        self._scorable: str | None = None  # "" once the log-prob check passed, else why not

    @property
    def tokens_processed(self) -> int:
        """Prompt + completion tokens by the server's own count: what tokens/s counts."""
        return self.client.tokens_processed

    @property
    def errors(self) -> list[RequestError]:
        """The requests that failed after their retries."""
        return self.client.errors

    def close(self) -> None:
        self.client.close()

    @property
    def chat(self) -> bool:
        """Whether the server is spoken to through chat completions only (its template, its prefix token)."""
        return self.client.endpoint.chat

    @property
    def _prefix_text(self) -> str:
        # A property, so a tokenizer set after connecting (the CLI connects first) takes effect.
        return "" if self.chat else _prefix_text(self.tokenizer)

    # ----- request API -------------------------------------------------------------------------

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Log-probability of each continuation given its context, from the server's prompt log-probs.

        Trailing spaces of the context move to the continuation, as `HFEngine` splits them.
        """
        if not requests:
            return []
        if not self._check_scorable(requests):
            return [FAILED_LOGLIKELIHOOD] * len(requests)
        # Tokenizer calls stay in this thread: a fast tokenizer shared by threads may refuse ("Already borrowed").
        pieces = [(*self._split(request), request) for request in requests]
        return self._map(lambda piece: self._score(*piece), pieces, "loglikelihood")

    def loglikelihood_rolling(self, requests: list[RollingRequest], *,
                              stride: int | None = None) -> list[Loglikelihood]:
        """Log-probability of each whole text; `is_greedy` is not computed (always False).

        With a tokenizer, texts longer than the context go in `HFEngine`'s windows (decoded back to
        text, which the server tokenizes again); without one, each text is one request.
        """
        if not requests:
            return []
        stride = stride or self.max_length
        if not 0 < stride <= self.max_length:
            raise ValueError(f"stride must be in 1..{self.max_length}, got {stride}")
        if not self._check_scorable(requests):
            return [FAILED_LOGLIKELIHOOD] * len(requests)
        pieces, owners = [], []
        for owner, request in enumerate(requests):
            for piece in self._windows(request.text, stride):
                pieces.append((*piece, request))
                owners.append(owner)
        scores = self._map(lambda piece: self._score(*piece), pieces, "perplexity")
        totals = [[0.0, 0] for _ in requests]
        for owner, score in zip(owners, scores):
            totals[owner][0] += score.logprob  # a failed window makes the whole text NaN
            totals[owner][1] += score.n_tokens
        return [Loglikelihood(logprob, False, n) for logprob, n in totals]

    def generate(self, requests: list[GenerationRequest], *, on_token: TokenCallback | None = None) -> list[str]:
        """Greedy continuations, each cut at its first stop string (not included); FAILED_GENERATION where a
        request failed."""
        if on_token is not None:
            raise DomainbenchError(f"endpoint {self.client.endpoint.url}: a server streams text, not the token ids "
                                   "on_token hears; generate without it")
        prompts = [self._generation_prompt(request) for request in requests]
        return self._map(lambda pair: self._generate_one(*pair), list(zip(prompts, requests)), "generate")

    def chat_prompt(self, user_text: str) -> str:
        """`user_text` as one user turn in the tokenizer's chat template, or unchanged without one (or when the
        server applies its own: a chat endpoint)."""
        if self.chat or not getattr(self.tokenizer, "chat_template", None):
            return user_text
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True)

    # ----- generation --------------------------------------------------------------------------

    def _generation_prompt(self, request: GenerationRequest) -> str:
        prompt = self._keep_last_tokens(request.prompt, self.max_length - request.max_new_tokens)
        # A chat template may already open with the prefix token; don't double it (as HFEngine).
        return prompt if prompt.startswith(self._prefix_text) else self._prefix_text + prompt

    def _generate_one(self, prompt: str, request: GenerationRequest) -> str:
        asked = {"messages": [{"role": "user", "content": prompt}]} if self.chat else {"prompt": prompt}
        body = self.client.post(request, {**asked, "max_tokens": request.max_new_tokens, **_GREEDY})
        if body is None:
            return FAILED_GENERATION
        return cut_at_stop(response_text(body, chat=self.chat), request.stop)

    # ----- scoring -----------------------------------------------------------------------------

    def _split(self, request: LoglikelihoodRequest) -> tuple[str, str]:
        context, continuation = request.context, request.continuation
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        # Room for the prefix token and the one generated token the request asks for.
        budget = self.max_length - 2 - self._count_tokens(continuation)
        return self._keep_last_tokens(context, max(budget, 0)), continuation

    def _windows(self, text: str, stride: int):
        """(context, continuation) pieces that score every token of `text` once.

        Unlike HFEngine's, every window opens with the prefix token: the log-prob check vouches for
        prompts that do (llama-cpp-python's server misaligns the others).
        """
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if self.tokenizer is not None else []
        width = self.max_length - 3  # room for the prefix token, a window's context token and the generated one
        if len(ids) <= width:
            yield "", text
            return
        for window in rolling_windows(ids, -1, width, min(stride, width)):  # -1 stands in for the prefix
            context = [t for t in window.tokens[:-window.n_scored] if t != -1]
            yield self.tokenizer.decode(context), self.tokenizer.decode(window.tokens[-window.n_scored:])

    def _score(self, context: str, continuation: str, request: object) -> Loglikelihood:
        if not continuation:
            return Loglikelihood(0.0, True, 0)
        prompt = self._prefix_text + context + continuation
        body = self.client.post(request, {"prompt": prompt, "max_tokens": 1, "echo": True, "logprobs": 1, **_GREEDY})
        if body is None:
            return FAILED_LOGLIKELIHOOD
        try:
            return _continuation_logprob(body, len(continuation))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            failure = RequestError("bad_response", f"no prompt log-probs in the response ({exc!r})", request)
            self.client.record(failure, counted=True)
            return FAILED_LOGLIKELIHOOD

    def _check_scorable(self, requests: list) -> bool:
        """Once: the server's echoed log-prob of a token equals the one it gives when generating it.

        Raises NotScorable where it does not. False where the check itself could not reach the
        server: then every request is recorded as failed the way the check failed.
        """
        if self._scorable is None and self.chat:
            self._scorable = "it is spoken to through chat completions only, which give no prompt log-probabilities"
        if self._scorable is None:
            try:
                self._scorable = self._probe()
            except _ProbeFailed as failed:
                for request in requests:
                    self.client.record(RequestError(failed.error.kind, failed.error.message, request))
                return False
        if self._scorable:
            raise NotScorable(f"endpoint {self.client.endpoint.url} ({self.client.model_id}): {self._scorable}")
        return True

    def _probe(self) -> str:
        """Why prompt log-probs cannot be used ("" when they can), or _ProbeFailed."""
        prompt = self._prefix_text + _PROBE_TEXT
        options = {"max_tokens": 1, "logprobs": 1, **_GREEDY}
        generated = self._probe_post({"prompt": prompt, **options})
        if generated is None:
            return "it refuses log-probabilities"
        logprobs = generated["choices"][0].get("logprobs") or {}
        if not logprobs.get("token_logprobs"):
            return "it returns no log-probabilities"
        token, expected = logprobs["tokens"][0], logprobs["token_logprobs"][0]
        echoed = self._probe_post({"prompt": prompt + token, "echo": True, **options})
        if echoed is None:
            return "it refuses prompt log-probabilities (echo with logprobs)"
        try:
            found = _continuation_logprob(echoed, len(token))
        except (KeyError, IndexError, TypeError, ValueError):
            return "it returns no prompt log-probabilities (echo with logprobs)"
        if found.n_tokens == 0 or abs(found.logprob - expected) > _PROBE_TOLERANCE:
            hint = ("" if self.tokenizer is not None
                    else " (with the model's tokenizer the engine could open prompts with its BOS token)")
            return (f"its prompt log-probabilities are misaligned: {found.logprob:.3f} echoed against {expected:.3f} "
                    f"generated for {token!r}{hint}")
        return ""

    def _probe_post(self, body: dict) -> dict | None:
        """A check request: its body, None where the server refuses it (4xx), or _ProbeFailed."""
        answer = self.client.attempt("log-prob check", body)
        if not isinstance(answer, RequestError):
            return answer
        if answer.kind in ("connection", "timeout", "bad_response", "http_429") or answer.kind.startswith("http_5"):
            raise _ProbeFailed(answer)
        return None

    # ----- tokens ------------------------------------------------------------------------------

    def _count_tokens(self, text: str) -> int:
        if self.tokenizer is None:
            return 0
        return count_tokens(self.tokenizer, text)

    def _keep_last_tokens(self, text: str, n: int) -> str:
        """`text` cut from the left to its last `n` tokens, as `HFEngine` cuts ids (needs the tokenizer)."""
        if self.tokenizer is None:
            return text
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= n else self.tokenizer.decode(ids[len(ids) - n:] if n else [])

    def _map(self, function, items: list, description: str) -> list:
        """`function` over `items`, `concurrency` at a time, results in order."""
        results = [None] * len(items)
        enabled = self.progress and len(items) > 0
        with counting_bar(description, len(items), enabled=enabled) as advance, \
                ThreadPoolExecutor(max_workers=self.client.concurrency) as pool:
            futures = {pool.submit(function, item): index for index, item in enumerate(items)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                advance(1)
        return results


def _continuation_logprob(body: dict, continuation_chars: int) -> Loglikelihood:
    """Sum of the echoed log-probs of the prompt tokens that cover its last `continuation_chars` characters.

    The echoed list holds the prompt's tokens, then the `usage.completion_tokens` generated ones.
    Offsets count characters of the server's own rendering of the prompt (llama-cpp-python leaves
    special tokens out of it), so the continuation is located from the prompt's end. A token that
    straddles the boundary counts as continuation, as when `HFEngine` encodes the pair whole. The
    first prompt token has no log-prob (None) and is not counted.
    """
    choice = body["choices"][0]
    logprobs = choice["logprobs"]
    offsets, tokens = logprobs["text_offset"], logprobs["tokens"]
    values, tops = logprobs["token_logprobs"], logprobs["top_logprobs"]
    n_prompt = len(tokens) - int((body.get("usage") or {}).get("completion_tokens", 1))
    if not 0 < n_prompt <= len(tokens) or len(offsets) != len(tokens):
        raise ValueError(f"{len(tokens)} echoed tokens")
    end = offsets[n_prompt] if n_prompt < len(tokens) else offsets[-1] + len(tokens[-1])
    start = end - continuation_chars
    logprob, greedy, n = 0.0, True, 0
    for k in range(n_prompt):
        if offsets[k] + len(tokens[k]) <= start or values[k] is None:
            continue
        logprob += values[k]
        greedy &= values[k] >= max((tops[k] or {}).values(), default=values[k]) - 1e-6
        n += 1
    return Loglikelihood(logprob, bool(greedy and n), n)


def _prefix_text(tokenizer) -> str:
    """The text of the token `HFEngine` conditions the first token on (BOS, else EOS), unless the
    tokenizer adds its BOS itself — the server's tokenizer will then add it too."""
    if tokenizer is None:
        return ""
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if prefix is None or tokenizer("a")["input_ids"][:1] == [prefix]:
        return ""
    return tokenizer.decode([prefix])


def open_endpoint(spec: str, options: EngineOptions) -> OpenAIEngine:
    """The registry's opener for `openai+http://…` and `openai-chat+http://…`: connects at once."""
    return OpenAIEngine(spec, options.tokenizer, concurrency=options.concurrency, timeout=options.timeout,
                        progress=options.progress)
