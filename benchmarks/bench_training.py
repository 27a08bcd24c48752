"""Training-step throughput against a naive loop (plain HF forward with labels, full logits).

Run: `pytest benchmarks/bench_training.py --benchmark-only`. Each case stores `speedup_vs_naive`
and the bytes of fp32 logits (and their gradient) the chunked loss never materialises in the
benchmark's extra_info. On CUDA, peak memory of both paths is stored too.
"""

from __future__ import annotations

import copy

import pytest
import torch

from benchmarks.conftest import seconds, training_steps
from tuning.loop import causal_lm_loss

BATCH, LENGTH, STEPS = 4, 256, 2


def _batch(vocab: int, pad_id: int):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 380, (BATCH, LENGTH), generator=generator)
    return {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}


def _lora(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16,
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))


def _steps(model, batch, loss_of):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def run():
        for _ in range(STEPS):
            loss = loss_of(model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return run


def _chunked(model, batch):
    loss, n = causal_lm_loss(model, batch, chunk_size=256)
    return loss / n


def _naive(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_training_step_chunked_loss_vs_naive(benchmark, bench_model, bench_tokenizer, strategy):
    def fresh():
        model = copy.deepcopy(bench_model).train()
        return _lora(model) if strategy == "lora" else model

    batch = _batch(bench_model.config.vocab_size, bench_tokenizer.pad_token_id)
    naive = seconds(_steps(fresh(), batch, _naive), repeats=2)
    benchmark.pedantic(_steps(fresh(), batch, _chunked), rounds=3, iterations=1)
    ours = benchmark.stats.stats.min
    tokens = STEPS * BATCH * LENGTH
    logits_bytes = BATCH * LENGTH * bench_model.config.vocab_size * 4
    benchmark.extra_info.update({"naive_seconds": naive, "speedup_vs_naive": naive / ours,
                                 "tokens_per_second": tokens / ours, "naive_tokens_per_second": tokens / naive,
                                 "full_logits_bytes_avoided": 2 * logits_bytes})
    print(f"\n{strategy}: chunked {tokens / ours:,.0f} tok/s vs naive {tokens / naive:,.0f} tok/s "
          f"-> {naive / ours:.2f}x; full logits + grad not materialised: {2 * logits_bytes / 2**20:.0f} MiB")


@pytest.mark.parametrize("strategy", ["lora", "full"])
def test_quick_profile_steps_packed_in_bf16_vs_padded_in_fp32(benchmark, strategy):
    """The builtin model on the quick profile's own data: what bf16 autocast and packing buy together.

    Baseline: fp32, right-padded micro-batches (the loop before either). Throughput counts real
    (unpadded) tokens, as the loop's tok/s does.
    """
    from peft import get_peft_model

    from harness.models import cpu_has_native_bf16, load_model
    from tasks.suite import load_suite
    from tuning.batches import collate, packed_collate
    from tuning.data import training_data
    from tuning.loop import compile_layers
    from tuning.peft_adapters import peft_config
    from tuning.recipe import load_recipe

    recipe = load_recipe(strategy, profile="quick")
    loaded = load_model("smollm2-135m-instruct", device="cpu", dtype="float32")
    data = training_data(recipe.data, loaded.tokenizer, load_suite("manpages"), seed=recipe.seed)
    size = recipe.train.batch_size
    groups = [data.train[start:start + size] for start in range(0, 8 * size, size)]
    pad = loaded.tokenizer.pad_token_id
    real_tokens = sum(len(example["input_ids"]) for group in groups for example in group)

    def steps(make_batch, autocast: bool, compiled: bool = False):
        model = copy.deepcopy(loaded.model).train()
        if strategy == "lora":  # the adapter the quick profile trains (rank, modules, dropout)
            model = get_peft_model(model, peft_config(recipe.method["adapter"], model))
        if compiled:
            compile_layers(model)
        return training_steps(model, [make_batch(group, pad, "cpu") for group in groups], autocast=autocast)

    baseline = seconds(steps(collate, False), repeats=1)
    benchmark.pedantic(steps(packed_collate, cpu_has_native_bf16()), rounds=1, iterations=1)
    ours = benchmark.stats.stats.min
    packed_fp32 = seconds(steps(packed_collate, False), repeats=1)
    compiled_steps = steps(packed_collate, cpu_has_native_bf16(), compiled=True)  # train.compile: true
    first_compiled = seconds(compiled_steps, repeats=1)  # compiles (once per new shape), then steps
    compiled = seconds(compiled_steps, repeats=1)
    benchmark.extra_info.update({"baseline_tokens_per_second": real_tokens / baseline,
                                 "tokens_per_second": real_tokens / ours, "speedup": baseline / ours,
                                 "packing_alone_speedup": baseline / packed_fp32,
                                 "compiled_speedup": baseline / compiled,
                                 "compile_seconds": first_compiled - compiled})
    print(f"\n{strategy}, quick-profile data, {len(groups)} steps of {size}: packed+bf16 {real_tokens / ours:,.0f} "
          f"real tok/s vs padded fp32 {real_tokens / baseline:,.0f} -> {baseline / ours:.2f}x "
          f"(packing alone, fp32: {baseline / packed_fp32:.2f}x; with train.compile {baseline / compiled:.2f}x "
          f"after {first_compiled - compiled:.0f} s of compilation; goal 2x)")
