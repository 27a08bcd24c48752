"""What `--dtype auto` buys: bf16 against fp32 in the same run, on the builtin SmolLM2-135M and MiniLM.

Only where the CPU computes bf16 natively (AVX-512 BF16 or AMX) or on a GPU: elsewhere auto is
fp32 and there is nothing to compare. Each case stores `speedup_vs_fp32` in extra_info and prints
it; the scoring case also stores how far bf16 perplexity is from fp32 (the goal: within 0.5%).

Run: `make bench` or `pytest benchmarks/bench_dtype.py -s`.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from benchmarks.conftest import seconds, training_steps
from engines.hf import HFEngine
from harness.models import cpu_has_native_bf16, load_model
from harness.requests import GenerationRequest, RollingRequest
from tasks.suite import load_suite

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() or cpu_has_native_bf16()),
                                reason="no native bf16 here: --dtype auto is fp32")


@pytest.fixture(scope="module")
def smollm():
    loaded = load_model("smollm2-135m-instruct", device="cpu", dtype="float32")
    bf16 = copy.deepcopy(loaded.model).to(torch.bfloat16)
    return loaded.model, bf16, loaded.tokenizer


@pytest.fixture(scope="module")
def manpages():
    return {task.name: task for task in load_suite("manpages").tasks}


def _report(benchmark, fp32_seconds: float, name: str, **extra) -> float:
    speedup = fp32_seconds / benchmark.stats.stats.min
    benchmark.extra_info.update({"fp32_seconds": fp32_seconds, "speedup_vs_fp32": speedup, **extra})
    details = "".join(f", {key} {value:.4g}" for key, value in extra.items())
    print(f"\n{name}: bf16 {benchmark.stats.stats.min:.2f}s vs fp32 {fp32_seconds:.2f}s -> {speedup:.2f}x{details}")
    return speedup


def test_perplexity_of_ten_man_pages(benchmark, smollm, manpages):
    fp32, bf16, tokenizer = smollm
    requests = [RollingRequest(example["text"]) for example in manpages["perplexity"].examples["test"][:10]]

    def perplexity(model):
        scores = HFEngine(model, tokenizer, device="cpu", progress=False).loglikelihood_rolling(requests)
        return math.exp(-sum(s.logprob for s in scores) / sum(s.n_tokens for s in scores))

    reference = perplexity(fp32)
    fp32_seconds = seconds(lambda: perplexity(fp32), repeats=1)
    benchmark.pedantic(lambda: perplexity(bf16), rounds=1, iterations=1)
    relative = abs(perplexity(bf16) - reference) / reference
    _report(benchmark, fp32_seconds, "rolling perplexity, 10 man pages", relative_difference=relative)


def test_generation_16_prompts_by_32_tokens(benchmark, smollm, manpages):
    """Ours (bf16, engines.greedy, one-query attention) against transformers' `generate` over the
    left-padded fp32 batch, which is what the engine ran before; also the engine in bf16 with `generate`."""
    fp32, bf16, tokenizer = smollm
    requests = [GenerationRequest(f"Manual page description:\n{e['document'][:400]}\nOne-line summary:",
                                  max_new_tokens=32) for e in manpages["summarize"].examples["test"][:16]]

    def generate(model, *, own: bool):
        engine = HFEngine(model, tokenizer, device="cpu", progress=False)
        engine._decodes_itself = own and engine._uses_own_decoding()
        return engine.generate(requests)

    fp32_seconds = seconds(lambda: generate(fp32, own=False), repeats=1)
    bf16_generate_seconds = seconds(lambda: generate(bf16, own=False), repeats=1)
    benchmark.pedantic(lambda: generate(bf16, own=True), rounds=1, iterations=1)
    _report(benchmark, fp32_seconds, "generation 16 x 32 (baseline: transformers generate, fp32)",
            tokens_per_second=16 * 32 / benchmark.stats.stats.min,
            baseline_tokens_per_second=16 * 32 / fp32_seconds,
            speedup_with_generate_in_bf16=fp32_seconds / bf16_generate_seconds)


def test_minilm_encoding(benchmark):
    from retrieval.chunking import ChunkingSettings, chunk_corpus
    from retrieval.corpus import load_corpus
    from retrieval.embedding import load_encoder
    from tasks.suite import suite_corpus_path

    fp32 = load_encoder("minilm-l6", device="cpu", dtype="float32")
    bf16 = load_encoder("minilm-l6", device="cpu", dtype="bfloat16")
    documents = load_corpus(suite_corpus_path("manpages"))[:40]
    passages = [chunk.passage() for chunk in chunk_corpus(documents, fp32.tokenizer, ChunkingSettings())][:512]
    fp32_seconds = seconds(lambda: fp32.encode(passages), repeats=1)
    benchmark.pedantic(lambda: bf16.encode(passages), rounds=1, iterations=1)
    _report(benchmark, fp32_seconds, f"MiniLM encode {len(passages)} chunks",
            bf16_chunks_per_second=len(passages) / benchmark.stats.stats.min)


@pytest.mark.parametrize("strategy", ["lora", "full"])
def test_training_steps_under_autocast(benchmark, smollm, strategy):
    """Forward, chunked loss, backward and AdamW at the quick profile's shape (4 x 128 tokens)."""

    fp32_model, _, tokenizer = smollm
    ids = torch.randint(3, tokenizer.vocab_size, (4, 128), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}

    def steps(autocast: bool, n: int = 2):
        model = copy.deepcopy(fp32_model).train()
        if strategy == "lora":
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32,
                                                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
        return training_steps(model, [batch] * n, autocast=autocast)

    fp32_seconds = seconds(steps(False), repeats=1)
    benchmark.pedantic(steps(True), rounds=1, iterations=1)
    _report(benchmark, fp32_seconds, f"{strategy} training, 2 steps of 4 x 128",
            bf16_tokens_per_second=2 * 4 * 128 / benchmark.stats.stats.min)
