"""OpenAI completions and chat completions for `domainbench serve`: what a request may ask, and the answer's body.

A completions `prompt` is a string, a list of strings, a list of token ids or a list of such lists
(lm-evaluation-harness sends token ids by default). Token ids are scored exactly as sent; they are
generated from as their decoded text (the engine takes text). The generated tokens are part of the
answer as the model produced them: an answer that ends at end-of-sequence counts that token in
`usage.completion_tokens` and in the echoed `logprobs` (as vLLM and OpenAI do), so a client that
slices `token_logprobs[ctxlen:-1]` cuts the generated token, never a prompt token.

With `+rag` the retrieval query is the prompt (or the last user message), with no per-task
exclusions: the server does not know the task. Log-likelihood scoring (`logprobs`) is refused
there, since its query would hold the candidate answer.

Every limit is a refusal with its reason (serve.api answers it): prompts per request,
prompt + `max_tokens` against the model's context (the prompt is never cut silently), token ids
outside the vocabulary, `logprobs` above MAX_LOGPROBS, sampling parameters (decoding is greedy).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from harness.requests import GenerationRequest, TokenCallback

# Abandoned, ShuttingDown and ServingLimits are the served model's; importers of this module keep them here too.
from serve.model import Abandoned, ServedModel, ServingLimits, ShuttingDown  # noqa: F401

MAX_LOGPROBS = 5
# Greedy decoding is all the engine does: these values (OpenAI's defaults) are accepted, others refused.
_GREEDY_DEFAULTS = {"temperature": (0.0,), "top_p": (1.0,), "n": (1,), "best_of": (1,), "presence_penalty": (0.0,),
                    "frequency_penalty": (0.0,), "repeat_penalty": (1.0,), "top_k": (0, -1, 1)}
# Tokens decoded before each one when finding the text it adds: enough for a character split over
# several byte-level tokens, and what keeps echoed logprobs linear in the prompt's length.
_DECODE_WINDOW = 6


class Refused(Exception):
    """The request's own fault (or more than the server takes): answered with `status` and one line."""

    def __init__(self, message: str, kind: str = "invalid_request", status: int = 400):
        super().__init__(message)
        self.kind, self.status = kind, status


@dataclass(frozen=True)
class Prompt:
    """One prompt: its text, and the token ids it is scored on (the client's own ids when it sent ids)."""

    text: str
    ids: list[int]


@dataclass(frozen=True)
class Generated:
    """One answer: its text, the tokens the model generated for it (its end-of-sequence included), and why it ended."""

    text: str
    token_ids: list[int]
    finish_reason: str


def response_id(chat: bool) -> str:
    """A new answer's id, as OpenAI forms them (also its trace's id, when the server keeps traces)."""
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"


def check_greedy(body: dict) -> None:
    """Refuse sampling: the engine decodes greedily, and a silently ignored temperature misleads."""
    for name, allowed in _GREEDY_DEFAULTS.items():
        value = body.get(name)
        if value is not None and value not in allowed:
            raise Refused(f"{name}={value!r} asks for sampling; this server decodes greedily only "
                          f"(use {name}={allowed[0]!r} or leave it out)", kind="sampling_refused")
    if body.get("stream") and (body.get("logprobs") is not None or body.get("echo")):
        raise Refused("stream=true with logprobs or echo is not supported", kind="stream_refused")
    if body.get("logit_bias"):
        raise Refused("logit_bias is not supported")


def completion(served: ServedModel, body: dict, on_token: TokenCallback | None = None,
               abandoned: threading.Event | None = None) -> tuple[dict, dict]:
    """The /v1/completions response for `body`, and the token counts for the metrics."""
    prompts = parse_prompts(served, body.get("prompt"))
    max_tokens = _max_tokens(body)
    logprobs = body.get("logprobs")
    if logprobs is not None and (not isinstance(logprobs, int) or isinstance(logprobs, bool)
                                 or not 0 <= logprobs <= MAX_LOGPROBS):
        raise Refused(f"logprobs: expected an integer 0..{MAX_LOGPROBS}")
    if served.augmenter is not None and logprobs is not None:
        raise Refused("logprobs on a +rag configuration: retrieval would search with the whole prompt, the "
                      "candidate answer included, which evaluation never does; score it with `domainbench eval` "
                      "offline", kind="rag_scoring_refused")
    stop = stop_strings(body)
    if served.augmenter is not None:
        prompts = [Prompt(text, served.engine.tokenizer(text, add_special_tokens=True)["input_ids"])
                   for text in (served.augmenter.augment(p.text, p.text)[0] for p in prompts)]
    for prompt in prompts:  # as the model will see it: passages in front included
        check_context(served, len(prompt.ids), max_tokens)
    answers = generate(served, [p.text for p in prompts], stop, max_tokens, on_token, abandoned)
    choices = []
    for index, (prompt, answer) in enumerate(zip(prompts, answers)):
        choice = {"index": index, "text": prompt.text + answer.text if body.get("echo") else answer.text,
                  "logprobs": None, "finish_reason": answer.finish_reason}
        if logprobs is not None:
            choice["logprobs"] = token_logprobs(served, prompt.ids, answer.token_ids, top=logprobs,
                                                echo=bool(body.get("echo")))
        choices.append(choice)
    usage = _usage(sum(len(p.ids) for p in prompts), sum(len(a.token_ids) for a in answers))
    return {"id": response_id(chat=False), "object": "text_completion", "created": int(time.time()),
            "model": served.name, "choices": choices, "usage": usage}, usage


def parse_prompts(served: ServedModel, prompt) -> list[Prompt]:
    """The prompts of a completions request: a string, strings, token ids, or lists of token ids."""
    tokenizer = served.engine.tokenizer
    if isinstance(prompt, str) or _is_token_ids(prompt):
        prompt = [prompt]
    if not isinstance(prompt, list) or not prompt or not all(isinstance(p, str) or _is_token_ids(p) for p in prompt):
        raise Refused("prompt: expected a string, a list of strings, a list of token ids or a list of such lists")
    if len(prompt) > served.limits.max_prompts:
        raise Refused(f"prompt: {len(prompt)} prompts in one request; this server takes at most "
                      f"{served.limits.max_prompts}", kind="too_many_prompts")
    if served.augmenter is not None and not all(isinstance(p, str) for p in prompt):
        raise Refused("prompt: token ids cannot go through retrieval (this configuration has +rag); send text")
    parsed = []
    for p in prompt:
        if isinstance(p, str):
            parsed.append(Prompt(p, tokenizer(p, add_special_tokens=True)["input_ids"]))
            continue
        outside = [token for token in p if not 0 <= token < len(tokenizer)]
        if outside:
            raise Refused(f"prompt: token id {outside[0]} is outside this model's vocabulary (0..{len(tokenizer) - 1})")
        parsed.append(Prompt(tokenizer.decode(p), list(p)))
    return parsed


def _is_token_ids(value) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(token, int) and not isinstance(token, bool) for token in value))


def check_context(served: ServedModel, prompt_tokens: int, max_tokens: int) -> None:
    """Refuse a prompt that, with the tokens asked for, does not fit the model's context (as vLLM does)."""
    context = served.engine.max_length
    if prompt_tokens + max_tokens > context:
        raise Refused(f"this model's context is {context} tokens; the request asks for {prompt_tokens + max_tokens} "
                      f"({prompt_tokens} in the prompt, {max_tokens} to generate): shorten the prompt or lower "
                      "max_tokens", kind="context_length_exceeded")


def chat_completion(served: ServedModel, body: dict, on_token: TokenCallback | None = None,
                    abandoned: threading.Event | None = None) -> tuple[dict, dict]:
    """The /v1/chat/completions response for `body` (the tokenizer's chat template), and the token counts."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in messages):
        raise Refused("messages: expected a list of {role, content} with string content")
    if body.get("logprobs"):
        raise Refused("logprobs: not supported on chat completions (use /v1/completions)")
    max_tokens = _max_tokens(body)
    messages = [dict(m) for m in messages]
    if served.augmenter is not None and messages[-1]["role"] == "user":
        content = messages[-1]["content"]
        messages[-1]["content"] = served.augmenter.augment(content, content)[0]
    prompt = _chat_prompt(served.engine, messages)
    prompt_tokens = len(served.engine.tokenizer(prompt, add_special_tokens=True)["input_ids"])
    check_context(served, prompt_tokens, max_tokens)
    answer = generate(served, [prompt], stop_strings(body), max_tokens, on_token, abandoned)[0]
    usage = _usage(prompt_tokens, len(answer.token_ids))
    choice = {"index": 0, "message": {"role": "assistant", "content": answer.text},
              "finish_reason": answer.finish_reason}
    return {"id": response_id(chat=True), "object": "chat.completion", "created": int(time.time()),
            "model": served.name, "choices": [choice], "usage": usage}, usage


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _chat_prompt(engine, messages: list[dict]) -> str:
    if len(messages) == 1 and messages[0]["role"] == "user":
        return engine.chat_prompt(messages[0]["content"])  # exactly the evaluation's chat path
    if not getattr(engine.tokenizer, "chat_template", None):
        raise Refused("this model's tokenizer has no chat template: send a single user message")
    return engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def generate(served: ServedModel, prompts: list[str], stop: tuple[str, ...], max_tokens: int,
             on_token: TokenCallback | None, abandoned: threading.Event | None) -> list[Generated]:
    """The engine's greedy answers, with the tokens each was generated as (heard as the engine decodes them)."""
    if max_tokens == 0:
        return [Generated("", [], "length") for _ in prompts]
    heard: list[list[int]] = [[] for _ in prompts]

    def hear(index: int, token: int) -> None:
        heard[index].append(token)
        if on_token is not None:
            on_token(index, token)
    texts = served.generate([GenerationRequest(prompt, stop, max_tokens) for prompt in prompts], hear, abandoned)
    return [_generated(served, text, tokens, max_tokens) for text, tokens in zip(texts, heard)]


def _generated(served: ServedModel, text: str, heard: list[int], max_tokens: int) -> Generated:
    """`text` with its tokens: the ones heard up to end-of-sequence when they make the text (no stop string cut
    it), else the text's own tokens (an engine that reports none, or an answer cut before a stop string)."""
    tokenizer = served.engine.tokenizer
    end = next((k + 1 for k, token in enumerate(heard) if token in served.eos_token_ids), None)
    heard = heard[:end] if end is not None else heard
    if heard and tokenizer.decode(heard, skip_special_tokens=True) == text:
        ended = end is not None or len(heard) < max_tokens
        return Generated(text, heard, "stop" if ended else "length")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return Generated(text, ids, "length" if len(ids) >= max_tokens else "stop")


def _max_tokens(body: dict) -> int:
    value = body.get("max_tokens", body.get("max_completion_tokens", 16))
    if value is None:
        return 16
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Refused(f"max_tokens: expected a non-negative integer, got {value!r}")
    return value


def stop_strings(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise Refused("stop: expected a string or a list of non-empty strings")
    return tuple(stop)


def token_logprobs(served: ServedModel, prompt_ids: list[int], completion_ids: list[int], *, top: int,
                   echo: bool) -> dict:
    """OpenAI legacy `logprobs` for the completion tokens (and the prompt's too with `echo`).

    The first token has no log-prob (None). Token strings are the decoded text each token adds,
    so `text_offset` counts characters of the decoded prompt + completion.
    """
    engine = served.engine
    if getattr(engine, "model", None) is None:
        raise Refused("logprobs: this engine (llama.cpp in-process) gives no log-probabilities", kind="unsupported")
    import torch

    ids = [*prompt_ids, *completion_ids]
    check_context(served, len(prompt_ids), len(completion_ids))
    with served.lock, torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([ids], device=engine.device)).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    first = 0 if echo else len(prompt_ids)
    pieces, offsets = token_pieces(engine.tokenizer, ids)
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


def token_pieces(tokenizer, ids: list[int]) -> tuple[list[str], list[int]]:
    """The text each token adds to the decoded sequence, and where it starts.

    Each token's piece is the decoded window of the tokens before it, with and without it: the
    window (not the whole prefix) keeps this linear in the length, and a token that completes a
    multi-byte character still finds the bytes that began it.
    """
    pieces, offsets, at = [], [], 0
    for k in range(len(ids)):
        start = max(0, k - _DECODE_WINDOW)
        before, after = tokenizer.decode(ids[start:k]), tokenizer.decode(ids[start:k + 1])
        piece = after[len(before):] if after.startswith(before) else tokenizer.decode([ids[k]])
        pieces.append(piece)
        offsets.append(at)
        at += len(piece)
    return pieces, offsets
