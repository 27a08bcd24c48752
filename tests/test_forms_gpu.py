"""nf4 (bitsandbytes 4-bit) is CUDA-only: built and scored beside its parent where a GPU is present."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu


def test_nf4_form_shrinks_the_weights_and_scores_close_to_its_parent(tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("bitsandbytes")
    from engines.hf import HFEngine
    from harness.models import load_model, model_fingerprint
    from harness.requests import RollingRequest
    from tuning.forms import FormSource, build_form, model_bytes

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    source = FormSource(tiny_model_dir, model_fingerprint(tiny_model_dir))
    artifact, manifest = build_form("nf4", source, settings={"int8": "weight-only", "gguf_type": "q8_0"})
    assert manifest["quantization"]["scheme"] == "nf4"
    assert model_bytes(artifact) < model_bytes(tiny_model_dir)
    text = [RollingRequest("The quick brown fox jumps over the lazy dog. " * 8)]
    parent = HFEngine(load_model(str(tiny_model_dir), device="cuda", dtype="bfloat16").model,
                    load_model(str(tiny_model_dir), device="cpu").tokenizer)
    quantized = load_model(str(artifact), device="cuda", dtype="bfloat16")
    form = HFEngine(quantized.model, quantized.tokenizer)
    a, b = parent.loglikelihood_rolling(text)[0], form.loglikelihood_rolling(text)[0]
    assert a.n_tokens == b.n_tokens
    assert abs(a.logprob - b.logprob) / a.n_tokens < 0.5
    assert torch.cuda.is_available()
