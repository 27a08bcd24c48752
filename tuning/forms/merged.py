"""`merged`: a LoRA adapter folded into its base weights by PEFT's `merge_and_unload`, a plain HF model dir."""

from __future__ import annotations

from pathlib import Path

from harness.errors import DomainbenchError
from harness.models import load_tokenizer
from tuning.forms.base import Form, FormBuild, register_form


def make_merged(build: FormBuild, directory: Path) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    source = build.source
    if source.adapter is None:
        raise DomainbenchError("merged: no adapter to merge")
    # fp32: merging adds the low-rank update to the weights; in bf16 the sum would round twice.
    base = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(source.adapter))
    if model.active_peft_config.is_prompt_learning:
        raise DomainbenchError(f"merged: {source.adapter} is a prompt-learning adapter; it has no weights to merge")
    merged = model.merge_and_unload()
    merged.save_pretrained(directory)
    load_tokenizer(source.path).save_pretrained(directory)
    return {"merged_adapter": str(source.adapter)}


MERGED = register_form(Form(name="merged", order=10, make=make_merged, merges="lora", vllm_servable=True,
                           libraries=("peft",)))
