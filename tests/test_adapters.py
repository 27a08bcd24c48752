"""harness.models.with_adapter: a merged copy on a CPU that computes what PEFT's wrapper computes."""

from __future__ import annotations

import copy

import pytest
import torch

from harness.errors import DomainbenchError
from harness.models import detach_adapter, require_adapter_dir, with_adapter


def _saved_adapter(model, tmp_path, config):
    """A PEFT adapter on a copy of `model`, its weights made non-zero so that merging matters."""
    from peft import get_peft_model

    peft_model = get_peft_model(copy.deepcopy(model), config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name or "ia3_" in name or "prompt_encoder" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05
                                + (1.0 if "ia3_" in name else 0.0))
    peft_model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


@torch.inference_mode()
def _logits(model, ids):
    return model(input_ids=ids).logits.float()


def test_lora_is_merged_into_a_copy_with_peft_wrappers_logits_and_the_base_untouched(tiny_model, tmp_path):
    from peft import LoraConfig, PeftModel

    adapter = _saved_adapter(tiny_model, tmp_path, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj",
                                                                                                  "up_proj"]))
    ids = torch.tensor([[1, 20, 30, 40, 50, 60, 70]])
    base_before = _logits(tiny_model, ids)
    merged = with_adapter(tiny_model, adapter)
    assert not isinstance(merged, PeftModel)  # plain weights: the engine's fast path
    reference = PeftModel.from_pretrained(copy.deepcopy(tiny_model), str(adapter)).eval()
    expected = _logits(reference, ids)
    assert not torch.allclose(expected, base_before, atol=1e-3)  # the adapter changes the output
    assert torch.allclose(_logits(merged, ids), expected, atol=1e-4)
    assert torch.equal(_logits(tiny_model, ids), base_before)  # the loaded weights stay exact
    detach_adapter(merged)  # nothing to undo for a merged copy


def test_prompt_learning_adapters_wrap_the_model_and_detach_leaves_it_as_it_was(tiny_model, tmp_path):
    from peft import PeftModel, PromptTuningConfig

    tiny_model = copy.deepcopy(tiny_model)  # PEFT freezes what it wraps; the fixture is shared
    adapter = _saved_adapter(tiny_model, tmp_path, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    ids = torch.tensor([[1, 20, 30, 40]])
    base_before = _logits(tiny_model, ids)
    wrapped = with_adapter(tiny_model, adapter)
    assert isinstance(wrapped, PeftModel)
    detach_adapter(wrapped)
    assert torch.equal(_logits(tiny_model, ids), base_before)


def test_a_directory_without_adapter_config_is_refused(tmp_path):
    with pytest.raises(DomainbenchError, match="no adapter_config.json"):
        require_adapter_dir(tmp_path)
