"""GGUF export: what llama.cpp loads from an exported HF directory scores like the HF model itself.

llama.cpp runs in an IsolatedEngine, as in a run: a fault in its kernels fails that test, not the session.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from engines.hf import HFEngine
from engines.isolated import IsolatedEngine
from engines.llama_cpp import LlamaCppEngine
from harness.errors import DomainbenchError
from harness.models import load_tokenizer, resolve_model
from harness.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest
from tuning.gguf_export import export_gguf

MAX_LENGTH = 128
# Sum of |Δ log p| over requests / scored tokens, llama.cpp vs float32 HF on the same weights,
# measured on this 2-core AMD EPYC. f16 (f16 weights and KV cache): builtin 0.0002 / 0.0008
# (pairs / rolling), the small random models <= 0.0007; per token on 1.5k man-page tokens the
# builtin's mean |Δ| is 0.0027 (max 0.03). q8_0 (8-bit activations too): 0.008 / 0.014.
# Bugs cost far more: Q and K left in HF's row order scored 0.13 on the builtin, 2.2 on the small.
F16_MEAN_TOKEN_TOLERANCE = 0.01
Q8_0_MEAN_TOKEN_TOLERANCE = 0.03

TEXTS = ["The open() system call opens the file specified by pathname.",
         "On error, -1 is returned and errno is set to indicate the error: EACCES, EEXIST, ENOENT.",
         "The rename() function renames a file, moving it between directories if required. " * 4]


def test_an_unsupported_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(DomainbenchError, match="GPT2LMHeadModel is not supported"):
        export_gguf(tmp_path, tmp_path / "model.gguf")
    assert not (tmp_path / "model.gguf").exists()


def test_an_adapter_directory_is_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(DomainbenchError, match="no readable config.json"):
        export_gguf(tmp_path, tmp_path / "model.gguf")


def test_an_unknown_type_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(DomainbenchError, match="'q3_k' is not one of f16, q8_0, q4_k_m"):
        export_gguf(tiny_model_dir, tmp_path / "model.gguf", quant="q3_k")


def test_a_model_whose_tokenizer_differs_from_the_template_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(DomainbenchError, match="template must share its tokenizer"):
        export_gguf(tiny_model_dir, tmp_path / "model.gguf")


def llama_engine(gguf_file, tokenizer) -> IsolatedEngine:
    return IsolatedEngine(LlamaCppEngine, gguf_file, tokenizer, name="llama.cpp", max_length=MAX_LENGTH, progress=False)


def mean_token_difference(ours, reference) -> float:
    assert [r.n_tokens for r in ours] == [r.n_tokens for r in reference]
    return sum(abs(a.logprob - b.logprob) for a, b in zip(ours, reference)) / sum(r.n_tokens for r in reference)


def agreement(gguf_file, hf_dir, tokenizer) -> tuple[float, float]:
    """Mean per-token |Δ log p| of llama.cpp on `gguf_file` vs float32 HF on `hf_dir`: (loglikelihood, rolling)."""
    hf = HFEngine(LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval(), tokenizer,
                device="cpu", max_length=MAX_LENGTH, progress=False)
    ours = llama_engine(gguf_file, tokenizer)
    try:
        pairs = [LoglikelihoodRequest(t[:20], t[20:]) for t in TEXTS]
        rolling = [RollingRequest(t) for t in TEXTS]
        return (mean_token_difference(ours.loglikelihood(pairs), hf.loglikelihood(pairs)),
                mean_token_difference(ours.loglikelihood_rolling(rolling, stride=64),
                                      hf.loglikelihood_rolling(rolling, stride=64)))
    finally:
        ours.close()


@pytest.fixture(scope="module")
def smollm2_dir():
    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_dir):
    return load_tokenizer(smollm2_dir)


def small_llama(tokenizer, directory, *, num_layers: int, drop: tuple[int, ...] = ()):
    """A random 64-wide Llama on the builtin tokenizer, saved to `directory`, minus the layers in `drop`.

    Weights are drawn 10x wider than a fresh init so attention is sharp and the logits spread:
    a mistake in the Q/K layout or the hyperparameters then moves scores by whole nats.
    """
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, initializer_range=0.2, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    kept = [layer for index, layer in enumerate(model.model.layers) if index not in drop]
    model.model.layers = torch.nn.ModuleList(kept)
    model.config.num_hidden_layers = len(kept)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.slow
def test_a_pruned_model_exports_and_scores_like_its_hf_form(smollm2_tokenizer, tmp_path):
    pruned = small_llama(smollm2_tokenizer, tmp_path / "pruned", num_layers=4, drop=(1, 2))
    exported = export_gguf(pruned, tmp_path / "pruned.gguf")
    pair_difference, rolling_difference = agreement(exported, pruned, smollm2_tokenizer)
    assert pair_difference < F16_MEAN_TOKEN_TOLERANCE and rolling_difference < F16_MEAN_TOKEN_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("quant, file_type", [("q8_0", "Q8_0"), ("q4_k_m", "Q4_K_M")])
def test_quantized_exports_are_made_by_llama_cpp(smollm2_tokenizer, tmp_path, quant, file_type):
    directory = small_llama(smollm2_tokenizer, tmp_path / "small", num_layers=2)
    f16 = export_gguf(directory, tmp_path / "f16.gguf")
    quantized = export_gguf(directory, tmp_path / f"{quant}.gguf", quant=quant)
    assert quantized.stat().st_size < f16.stat().st_size
    engine = llama_engine(quantized, smollm2_tokenizer)
    assert engine.dtype == file_type
    engine.close()
    if quant == "q8_0":
        assert max(agreement(quantized, directory, smollm2_tokenizer)) < Q8_0_MEAN_TOKEN_TOLERANCE


@pytest.fixture(scope="module")
def smollm2_f16(smollm2_dir, tmp_path_factory):
    return export_gguf(smollm2_dir, tmp_path_factory.mktemp("gguf") / "smollm2-f16.gguf")


@pytest.mark.slow
def test_f16_export_of_the_builtin_scores_like_the_hf_engine(smollm2_f16, smollm2_dir, smollm2_tokenizer):
    pair_difference, rolling_difference = agreement(smollm2_f16, smollm2_dir, smollm2_tokenizer)
    assert pair_difference < F16_MEAN_TOKEN_TOLERANCE and rolling_difference < F16_MEAN_TOKEN_TOLERANCE


@pytest.mark.slow
def test_f16_export_of_the_builtin_generates_what_the_hf_engine_generates(smollm2_f16, smollm2_dir, smollm2_tokenizer):
    hf = HFEngine(LlamaForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval(), smollm2_tokenizer,
                device="cpu", max_length=MAX_LENGTH, progress=False)
    ours = llama_engine(smollm2_f16, smollm2_tokenizer)
    requests = [GenerationRequest(hf.chat_prompt("What does the open() system call do?"), max_new_tokens=16),
                GenerationRequest(hf.chat_prompt("What is the capital of France?"), stop=(".",), max_new_tokens=16)]
    assert ours.generate(requests) == hf.generate(requests)
    ours.close()
