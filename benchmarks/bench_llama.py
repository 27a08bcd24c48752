"""The `gguf` form's engine: llama.cpp on the builtin Q4_1 file against the HF engine in bf16.

Same requests as bench_dtype.py (10 man pages' perplexity, 16 summaries of 32 tokens) plus one
prompt at a time. Each case stores tokens/s of both engines in extra_info and prints them.

Run: `pytest benchmarks/bench_llama.py -s` (part of `make bench`).
"""

from __future__ import annotations

import math

import pytest

from benchmarks.conftest import seconds
from engines.hf import HFEngine
from engines.llama_cpp import LlamaCppEngine
from harness.models import gguf_origin, load_model
from harness.requests import GenerationRequest, RollingRequest
from tasks.suite import load_suite


@pytest.fixture(scope="module")
def engines():
    loaded = load_model("smollm2-135m-instruct", device="cpu", dtype="bfloat16")
    hf = HFEngine(loaded.model, loaded.tokenizer, device="cpu", progress=False)
    llama = LlamaCppEngine(gguf_origin("smollm2-135m-instruct"), loaded.tokenizer, progress=False)
    yield hf, llama
    llama.close()


@pytest.fixture(scope="module")
def manpages():
    return {task.name: task for task in load_suite("manpages").tasks}


def _report(benchmark, name: str, *, hf_seconds: float, hf_tokens: int, llama_tokens: int, **extra) -> None:
    hf_speed, llama_speed = hf_tokens / hf_seconds, llama_tokens / benchmark.stats.stats.min
    benchmark.extra_info.update({"hf_bf16_tokens_per_second": hf_speed, "llama_tokens_per_second": llama_speed,
                                 **extra})
    details = "".join(f", {key} {value:.4g}" for key, value in extra.items())
    print(f"\n{name}: llama.cpp Q4_1 {llama_speed:.0f} tok/s ({llama_tokens} tokens) vs HF bf16 {hf_speed:.0f} tok/s "
          f"({hf_tokens} tokens) -> {llama_speed / hf_speed:.2f}x{details}")


def _generated_tokens(tokenizer, texts: list[str]) -> int:
    return sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)


def test_perplexity_of_ten_man_pages(benchmark, engines, manpages):
    hf, llama = engines
    requests = [RollingRequest(example["text"]) for example in manpages["perplexity"].examples["test"][:10]]

    def perplexity(engine):
        scores = engine.loglikelihood_rolling(requests)
        n_tokens = sum(s.n_tokens for s in scores)
        return math.exp(-sum(s.logprob for s in scores) / n_tokens), n_tokens

    (hf_perplexity, n_tokens), (llama_perplexity, _) = perplexity(hf), perplexity(llama)
    hf_seconds = seconds(lambda: perplexity(hf), repeats=1)
    benchmark.pedantic(lambda: perplexity(llama), rounds=1, iterations=1)
    _report(benchmark, "rolling perplexity, 10 man pages", hf_seconds=hf_seconds, hf_tokens=n_tokens,
            llama_tokens=n_tokens, hf_perplexity=hf_perplexity, llama_perplexity=llama_perplexity)


@pytest.mark.parametrize("n_prompts", [16, 1])
def test_generation_by_32_tokens(benchmark, engines, manpages, n_prompts):
    hf, llama = engines
    requests = [GenerationRequest(f"Manual page description:\n{e['document'][:400]}\nOne-line summary:",
                                  max_new_tokens=32) for e in manpages["summarize"].examples["test"][:n_prompts]]
    hf_texts = hf.generate(requests)
    hf_seconds = seconds(lambda: hf.generate(requests), repeats=1)
    llama_texts = benchmark.pedantic(lambda: llama.generate(requests), rounds=1, iterations=1)
    # Tokens of what came out (an answer may end at EOS before 32), re-tokenized alike for both.
    _report(benchmark, f"generation {n_prompts} x 32", hf_seconds=hf_seconds,
            hf_tokens=_generated_tokens(hf.tokenizer, hf_texts),
            llama_tokens=_generated_tokens(hf.tokenizer, llama_texts))
