"""Benchmark fixtures: a small random Llama with a realistically large vocabulary.

The output projection's share of the work is what the engine optimises, so the benchmark model
has a 16k vocabulary over a 4-layer, 128-wide body (ids above the tokenizer's range are unused).
"""

from __future__ import annotations

import time

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from harness.tiny import build_tiny_tokenizer


@pytest.fixture(scope="session")
def bench_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def bench_model(bench_tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=16384, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=bench_tokenizer.bos_token_id, eos_token_id=bench_tokenizer.eos_token_id,
                         pad_token_id=bench_tokenizer.pad_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def seconds(fn, repeats: int = 3) -> float:
    """Best-of-`repeats` wall time of fn() (the naive baseline, timed in the same run)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def training_steps(model, batches: list[dict], *, autocast: bool):
    """A closure running one AdamW step per batch (chunked loss, bf16 autocast when asked)."""
    from tuning.loop import causal_lm_loss

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def run():
        for batch in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss, count = causal_lm_loss(model, batch, chunk_size=1024)
            (loss / count).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return run
