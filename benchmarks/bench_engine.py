"""Engine throughput against a naive per-example Hugging Face loop, in the same run.

Run: `make bench` (or `pytest benchmarks/bench_engine.py --benchmark-only`). Each case stores
`speedup_vs_naive` in the benchmark's extra_info and prints it.
"""

from __future__ import annotations

import random

import torch

from benchmarks.conftest import seconds
from engines.hf import HFEngine
from harness.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest

WORDS = ("the open system call file descriptor returns error errno pathname rename directory "
         "process signal memory mapping socket buffer read write flags mode").split()


def random_text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def naive_loglikelihood(model, tokenizer, requests):
    """One unpadded forward per request with full logits, as a simple HF loop does."""
    out = []
    with torch.inference_mode():
        for r in requests:
            ctx = tokenizer(r.context, add_special_tokens=False)["input_ids"]
            cont = tokenizer(r.continuation, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([[tokenizer.bos_token_id, *ctx, *cont]])
            logprobs = model(input_ids=ids).logits.log_softmax(-1)[0, -len(cont) - 1:-1]
            out.append(float(logprobs.gather(-1, torch.tensor(cont)[:, None]).sum()))
    return out


def report(benchmark, naive_seconds: float, name: str) -> None:
    speedup = naive_seconds / benchmark.stats.stats.min
    benchmark.extra_info["naive_seconds"] = naive_seconds
    benchmark.extra_info["speedup_vs_naive"] = speedup
    print(f"\n{name}: engine {benchmark.stats.stats.min:.3f}s vs naive {naive_seconds:.3f}s "
          f"-> {speedup:.1f}x")


def test_loglikelihood_multiple_choice(benchmark, bench_model, bench_tokenizer):
    rng = random.Random(0)
    requests = [LoglikelihoodRequest(random_text(rng, 60) + " Answer:", " " + rng.choice(WORDS))
                for _ in range(256)]
    engine = HFEngine(bench_model, bench_tokenizer, device="cpu", progress=False)
    naive = seconds(lambda: naive_loglikelihood(bench_model, bench_tokenizer, requests), repeats=2)
    benchmark.pedantic(lambda: engine.loglikelihood(requests), rounds=3, iterations=1)
    report(benchmark, naive, "loglikelihood x256")


def test_rolling_perplexity(benchmark, bench_model, bench_tokenizer):
    rng = random.Random(1)
    texts = [random_text(rng, rng.randint(40, 120)) for _ in range(64)]
    engine = HFEngine(bench_model, bench_tokenizer, device="cpu", max_length=512, progress=False)

    def naive():
        with torch.inference_mode():
            for text in texts:
                ids = torch.tensor([[bench_tokenizer.bos_token_id,
                                     *bench_tokenizer(text, add_special_tokens=False)["input_ids"]]])
                bench_model(input_ids=ids).logits.log_softmax(-1)

    naive_seconds = seconds(naive, repeats=2)
    benchmark.pedantic(lambda: engine.loglikelihood_rolling([RollingRequest(t) for t in texts]),
                       rounds=3, iterations=1)
    report(benchmark, naive_seconds, "rolling x64")


def test_greedy_generation(benchmark, bench_model, bench_tokenizer):
    rng = random.Random(2)
    prompts = [random_text(rng, rng.randint(10, 30)) for _ in range(32)]
    engine = HFEngine(bench_model, bench_tokenizer, device="cpu", progress=False)

    def naive():
        with torch.inference_mode():
            for prompt in prompts:
                ids = torch.tensor([[bench_tokenizer.bos_token_id,
                                     *bench_tokenizer(prompt, add_special_tokens=False)["input_ids"]]])
                bench_model.generate(input_ids=ids, max_new_tokens=24, do_sample=False,
                                     pad_token_id=bench_tokenizer.pad_token_id)

    naive_seconds = seconds(naive, repeats=1)
    requests = [GenerationRequest(p, max_new_tokens=24) for p in prompts]
    benchmark.pedantic(lambda: engine.generate(requests), rounds=2, iterations=1)
    report(benchmark, naive_seconds, "generate x32")


def test_multiple_choice_shares_the_context(benchmark, bench_model, bench_tokenizer):
    """Five labels after one long few-shot context, as the man-pages section task asks them."""
    rng = random.Random(3)
    labels = [" system call", " library function", " special file", " file format", " overview"]
    requests = [LoglikelihoodRequest(random_text(rng, 60) + " This page documents a", label)
                for _ in range(32) for label in labels]
    shared = HFEngine(bench_model, bench_tokenizer, device="cpu", max_length=512, progress=False)
    separate = HFEngine(bench_model, bench_tokenizer, device="cpu", max_length=512, share_contexts=False,
                      progress=False)
    baseline = seconds(lambda: separate.loglikelihood(requests), repeats=2)
    benchmark.pedantic(lambda: shared.loglikelihood(requests), rounds=3, iterations=1)
    report(benchmark, baseline, "multiple choice 32 x 5, shared context vs one row per label")
