"""`domainbench serve` used, unmodified, by clients that know nothing of it: lm-evaluation-harness's
`local-completions` model and the official `openai` SDK (both in the `test` extra).

The server runs as a process (`serve --model DIR`) on a tiny model whose end-of-sequence row is
scaled up, so greedy decoding ends at EOS after a good share of prompts: the case where a server
that leaves the EOS token out of an echo makes lm-eval cut an answer token instead.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.servers import start_serve, stop_serve

# Scaling EOS's (tied) embedding row by this makes it the greedy next token after about a quarter of
# the tiny model's prefixes (measured on the texts below).
EOS_BOOST = 8.0
CONTEXT = 256  # the tiny model's max_position_embeddings
# (context, continuation), as a multiple-choice or cloze task sends them; no two the same tokens in all
# (lm-eval's HFLM scores such requests in one forward pass, and there the request alone differs from it).
PAIRS = [
    ("Paris is the capital", " of"), ("Paris is the", " capital of France"), ("Paris", " is the capital"),
    ("errno is set", " to"), ("errno is set to", " indicate"), ("Classify the text", ":"),
    ("Classify", " the text: positive"), ("a small,", " nonnegative"), ("a small, nonnegative", " integer"),
    ("The open() system call opens the", " file"), ("The quick brown fox", " jumps over the lazy dog"),
    ("Question: Which header declares openat()?", " Answer: <fcntl.h>"), ("", "The rename() function"),
]


@pytest.fixture(scope="module")
def eos_prone_model_dir(tmp_path_factory):
    from harness.tiny import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    with torch.no_grad():
        model.model.embed_tokens.weight[tokenizer.eos_token_id] *= EOS_BOOST
    target = tmp_path_factory.mktemp("models") / "tiny-eos-prone"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def server(eos_prone_model_dir):
    process, url = start_serve(["--model", str(eos_prone_model_dir), "--dtype", "float32"])
    try:
        yield url, str(eos_prone_model_dir)
    finally:
        stop_serve(process)


def _instances(pairs):
    from lm_eval.api.instance import Instance

    return [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)]


def _ends_at_eos(model_dir: str, pairs) -> list[bool]:
    """Whether the engine's greedy token after context + continuation (the server's generation) is EOS."""
    from engines.hf import HFEngine
    from harness.models import load_model
    from harness.requests import GenerationRequest

    engine = HFEngine.from_loaded(load_model(model_dir, device="cpu", dtype="float32"), progress=False)
    first: dict[int, int] = {}
    engine.generate([GenerationRequest(context + continuation, (), 1) for context, continuation in pairs],
                    on_token=lambda index, token: first.setdefault(index, token))
    return [first[i] == engine.tokenizer.eos_token_id for i in range(len(pairs))]


def test_lm_eval_local_completions_through_serve_gets_lm_evals_own_hf_numbers(server):
    """lm-eval's own client code (token-id prompts, echo, max_tokens=1, token_logprobs[ctxlen:-1]) against
    the server equals lm-eval's HF model offline, on requests whose greedy next token is EOS as on the rest."""
    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    url, model_dir = server
    ends = _ends_at_eos(model_dir, PAIRS)
    assert 3 <= sum(ends) < len(PAIRS)  # both kinds of request are here
    client = LocalCompletionsAPI(base_url=f"{url}/v1/completions", model=model_dir, tokenizer_backend="huggingface",
                                 max_length=CONTEXT)
    assert client.tokenized_requests  # lm-eval's default: prompts go as token ids
    served = client.loglikelihood(_instances(PAIRS))
    offline = HFLM(pretrained=model_dir, batch_size=1, device="cpu", max_length=CONTEXT).loglikelihood(
        _instances(PAIRS))
    differences = [abs(s - o) for (s, _), (o, _) in zip(served, offline)]
    assert max(differences) < 1e-4, [(pair, d) for pair, d, end in zip(PAIRS, differences, ends) if d >= 1e-4]
    assert [greedy for _, greedy in served] == [greedy for _, greedy in offline]


def test_the_openai_sdk_retrieves_completes_streams_chats_and_gets_404_for_another_model(server):
    import openai

    url, name = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="not-needed", max_retries=0)
    assert client.models.retrieve(name).id == name

    echoed = client.completions.create(model=name, prompt="The quick brown fox", max_tokens=3, echo=True,
                                       logprobs=1, temperature=0)
    choice = echoed.choices[0]
    assert choice.text.startswith("The quick brown fox")
    assert len(choice.logprobs.tokens) == echoed.usage.prompt_tokens + echoed.usage.completion_tokens
    assert choice.logprobs.token_logprobs[0] is None and all(v <= 0 for v in choice.logprobs.token_logprobs[1:])

    plain = client.completions.create(model=name, prompt="Paris is", max_tokens=5)
    chunks = list(client.completions.create(model=name, prompt="Paris is", max_tokens=5, stream=True))
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)  # each chunk's choices[0] is there
    assert "".join(chunk.choices[0].text for chunk in chunks) == plain.choices[0].text
    counted = list(client.completions.create(model=name, prompt="Paris is", max_tokens=5, stream=True,
                                             stream_options={"include_usage": True}))
    assert counted[-1].choices == [] and counted[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert all(chunk.choices for chunk in counted[:-1])

    chat = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert chat.choices[0].message.role == "assistant" and isinstance(chat.choices[0].message.content, str)

    with pytest.raises(openai.NotFoundError) as refused:
        client.completions.create(model="gpt-4o", prompt="Hi", max_tokens=1)
    assert refused.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_an_answer_that_ends_at_eos_keeps_the_eos_token_in_its_echo(server):
    """max_tokens=1 after a prompt whose greedy next token is EOS: one completion token, echoed last."""
    import httpx

    url, model_dir = server
    context, continuation = next(pair for pair, end in zip(PAIRS, _ends_at_eos(model_dir, PAIRS)) if end and pair[0])
    body = httpx.post(f"{url}/v1/completions", timeout=30, json={
        "model": model_dir, "prompt": context + continuation, "max_tokens": 1, "echo": True, "logprobs": 1}).json()
    choice = body["choices"][0]
    assert body["usage"]["completion_tokens"] == 1 and choice["finish_reason"] == "stop"
    assert choice["logprobs"]["tokens"][-1] == "<|endoftext|>"
    assert len(choice["logprobs"]["tokens"]) == body["usage"]["prompt_tokens"] + 1
    assert math.isfinite(choice["logprobs"]["token_logprobs"][-1])
