"""`--dtype auto` and training's `mixed_precision: auto` follow the CPU: bf16 where it is native, fp32 elsewhere.

The CPU is forced through `harness.models.cpu_flags`, the one place the machine's flags are read.
"""

from __future__ import annotations

import pytest
import torch

import harness.models as models
from engines.hf import HFEngine
from harness.requests import LoglikelihoodRequest
from tuning.loop import _accelerator

AVX512_WITHOUT_BF16 = {"avx2", "avx512f", "avx512bw", "avx512_vnni"}  # e.g. Intel Cascade Lake, AMD Zen 3


@pytest.mark.parametrize("flags, dtype, autocast", [
    (AVX512_WITHOUT_BF16, torch.float32, "no"),
    (set(), torch.float32, "no"),  # no /proc/cpuinfo (macOS, Windows)
    (AVX512_WITHOUT_BF16 | {"avx512_bf16"}, torch.bfloat16, "bf16"),
    ({"avx2", "amx_tile", "amx_bf16", "amx_int8"}, torch.bfloat16, "bf16"),
])
def test_auto_precision_follows_the_cpus_bf16_instructions(monkeypatch, flags, dtype, autocast):
    monkeypatch.setattr(models, "cpu_flags", lambda: flags)
    assert models.parse_dtype("auto", "cpu") == dtype
    assert _accelerator("auto").mixed_precision == autocast


def test_a_cpu_without_native_bf16_evaluates_in_fp32_end_to_end(monkeypatch, tiny_model_dir):
    monkeypatch.setattr(models, "cpu_flags", lambda: AVX512_WITHOUT_BF16)
    loaded = models.load_model(str(tiny_model_dir), device="cpu", dtype="auto")
    engine = HFEngine.from_loaded(loaded, progress=False)
    assert engine.dtype == "float32"
    assert {parameter.dtype for parameter in loaded.model.parameters()} == {torch.float32}
    (score,) = engine.loglikelihood([LoglikelihoodRequest("open the", " file")])
    assert score.n_tokens > 0 and score.logprob < 0
