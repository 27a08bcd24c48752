"""The engine on a GPU: bf16 scores track fp32 CPU scores; static-cache generation matches dynamic.

Skipped without CUDA (CI has none); run them in a GPU session.
"""

from __future__ import annotations

import pytest
import torch

from engines.hf import HFEngine
from harness.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest

pytestmark = pytest.mark.gpu

TEXTS = ["The open() system call opens the file specified by pathname.", "On error, -1 is returned",
         "The rename() function renames a file, moving it between directories if required."]


def test_bf16_gpu_scores_track_fp32_cpu_scores(tiny_model, tiny_tokenizer):
    cpu = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    gpu_model = type(tiny_model)(tiny_model.config).to("cuda", torch.bfloat16).eval()
    gpu_model.load_state_dict(tiny_model.state_dict())
    gpu = HFEngine(gpu_model, tiny_tokenizer, progress=False)
    pairs = [LoglikelihoodRequest(t[:12], t[12:]) for t in TEXTS]
    for a, b in zip(cpu.loglikelihood(pairs), gpu.loglikelihood(pairs)):
        assert b.logprob == pytest.approx(a.logprob, rel=0.05, abs=0.5)
    rolling = [RollingRequest(t) for t in TEXTS]
    for a, b in zip(cpu.loglikelihood_rolling(rolling), gpu.loglikelihood_rolling(rolling)):
        assert b.logprob == pytest.approx(a.logprob, rel=0.05, abs=0.5)


def test_static_cache_generation_matches_dynamic(tiny_model, tiny_tokenizer):
    model = type(tiny_model)(tiny_model.config).to("cuda").eval()
    model.load_state_dict(tiny_model.state_dict())
    requests = [GenerationRequest(t, max_new_tokens=8) for t in TEXTS]
    dynamic = HFEngine(model, tiny_tokenizer, progress=False).generate(requests)
    static = HFEngine(model, tiny_tokenizer, static_cache=True, progress=False).generate(requests)
    assert static == dynamic
