"""Quantized forms through maintained libraries: torchao int8 (CPU and GPU), bitsandbytes nf4 (CUDA only).

Both are saved as Hugging Face model dirs whose config.json carries the quantization config, so
`from_pretrained(dir)` restores the quantized model without this module.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import DomainbenchError
from harness.models import first_line, load_tokenizer

# int8 schemes (RunSpec.forms.int8) -> torchao config class names.
INT8_CONFIGS = {"weight-only": "Int8WeightOnlyConfig", "dynamic": "Int8DynamicActivationInt8WeightConfig"}


def save_int8(source: Path, directory: Path, *, scheme: str) -> dict:
    """`source`'s linear layers with int8 weights (and, for `dynamic`, int8 activations), saved to `directory`."""
    import torch
    import torchao.quantization as ao
    from transformers import AutoModelForCausalLM, TorchAoConfig

    if scheme not in INT8_CONFIGS:
        raise DomainbenchError(f"forms.int8: {scheme!r} is not one of {', '.join(INT8_CONFIGS)}")
    config = TorchAoConfig(quant_type=getattr(ao, INT8_CONFIGS[scheme])())
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16, quantization_config=config)
    except (ValueError, RuntimeError, ImportError) as exc:
        raise DomainbenchError(f"int8 of {source}: torchao refused it: {first_line(exc)}") from exc
    _save(model, source, directory)
    return {"quantization": {"library": "torchao", "scheme": scheme, "config": INT8_CONFIGS[scheme]}}


def save_nf4(source: Path, directory: Path) -> dict:
    """`source` in bitsandbytes 4-bit NormalFloat with bf16 compute (needs CUDA), saved to `directory`."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if not torch.cuda.is_available():
        raise DomainbenchError("nf4 needs a CUDA GPU (bitsandbytes 4-bit kernels)")
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                                bnb_4bit_use_double_quant=False)
    model = AutoModelForCausalLM.from_pretrained(source, quantization_config=config, device_map={"": 0})
    _save(model, source, directory)
    return {"quantization": {"library": "bitsandbytes", "scheme": "nf4", "compute_dtype": "bfloat16"}}


def _save(model, source: Path, directory: Path) -> None:
    model.save_pretrained(directory)
    load_tokenizer(source).save_pretrained(directory)
