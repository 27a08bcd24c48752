"""What each deployable form buys at serving time: its speed against its parent in the same run.

The builtin SmolLM2-135M (bf16 by `--dtype auto` where the CPU has it) against its int8 (torchao
weight-only), pruned (the prune recipe's quick profile) and gguf (the shipped Q4_1 file, through
llama.cpp) forms, each built as a run builds it (cached in the domainbench cache). Two workloads:
rolling perplexity of 10 man pages and greedy generation of 16 prompts x 32 tokens. Each case
stores `speedup_vs_parent` and the form's perplexity next to the parent's in extra_info.

Run: `make bench` or `pytest benchmarks/bench_forms.py -s`.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.conftest import seconds
from engines.hf import HFEngine
from harness.models import (
    gguf_origin,
    load_model,
    load_tokenizer,
    model_fingerprint,
    resolve_model,
)
from harness.requests import GenerationRequest, RollingRequest
from tasks.suite import load_suite

FORMS = ("int8", "pruned", "gguf")


@pytest.fixture(scope="module")
def manpages():
    return load_suite("manpages")


@pytest.fixture(scope="module")
def parent():
    return load_model("smollm2-135m-instruct", device="cpu")


def _form_engine(form: str, suite):
    from engines.llama_cpp import LlamaCppEngine
    from tuning.forms import FormSource, build_form, form_model_path
    from tuning.prune import load_prune_recipe

    base = resolve_model("smollm2-135m-instruct")
    source = FormSource(base, model_fingerprint(base), gguf=gguf_origin("smollm2-135m-instruct"))
    artifact, _ = build_form(form, source, settings={"int8": "weight-only", "gguf_type": "q8_0"}, suite=suite,
                             recipe=load_prune_recipe(profile="quick") if form == "pruned" else None)
    path = form_model_path(artifact)
    if path.suffix == ".gguf":
        return LlamaCppEngine(path, load_tokenizer(artifact), progress=False)
    loaded = load_model(str(path), device="cpu")
    return HFEngine(loaded.model, loaded.tokenizer, progress=False)


def _workloads(suite):
    pages = [example["text"] for example in next(t for t in suite.tasks if t.name == "perplexity").examples["test"][:10]]
    prompts = [GenerationRequest(f"Summarize this manual page:\n{text[:400]}\nSummary:", (), 32) for text in pages[:8]] * 2
    return [RollingRequest(text) for text in pages], prompts


def _perplexity(engine, requests) -> float:
    scores = engine.loglikelihood_rolling(requests)
    return math.exp(-sum(s.logprob for s in scores) / sum(s.n_tokens for s in scores))


@pytest.mark.parametrize("form", FORMS)
def test_rolling_perplexity_of_ten_man_pages(benchmark, manpages, parent, form):
    rolling, _ = _workloads(manpages)
    reference = HFEngine(parent.model, parent.tokenizer, progress=False)
    parent_seconds = seconds(lambda: _perplexity(reference, rolling), repeats=1)
    engine = _form_engine(form, manpages)
    benchmark.pedantic(lambda: _perplexity(engine, rolling), rounds=1, iterations=1)
    speedup = parent_seconds / benchmark.stats.stats.min
    benchmark.extra_info.update({"parent_seconds": parent_seconds, "speedup_vs_parent": speedup,
                                 "perplexity_form": _perplexity(engine, rolling),
                                 "perplexity_parent": _perplexity(reference, rolling)})
    print(f"\nrolling perplexity, {form}: {benchmark.stats.stats.min:.2f}s vs parent {parent_seconds:.2f}s "
          f"-> {speedup:.2f}x (ppl {benchmark.extra_info['perplexity_form']:.3f} vs "
          f"{benchmark.extra_info['perplexity_parent']:.3f})")


@pytest.mark.parametrize("form", FORMS)
def test_generation_16_by_32(benchmark, manpages, parent, form):
    _, prompts = _workloads(manpages)
    reference = HFEngine(parent.model, parent.tokenizer, progress=False)
    parent_seconds = seconds(lambda: reference.generate(prompts), repeats=1)
    engine = _form_engine(form, manpages)
    benchmark.pedantic(lambda: engine.generate(prompts), rounds=1, iterations=1)
    speedup = parent_seconds / benchmark.stats.stats.min
    benchmark.extra_info.update({"parent_seconds": parent_seconds, "speedup_vs_parent": speedup})
    print(f"\ngeneration 16x32, {form}: {benchmark.stats.stats.min:.2f}s vs parent {parent_seconds:.2f}s "
          f"-> {speedup:.2f}x")
