"""PEFT adapters — LoRA, prefix tuning, IA3, prompt tuning — through one code path.

The recipe's `method.adapter` mapping names the method (`type`) and any fields of its PEFT
config. The artifact is a plain PEFT adapter dir: `PeftModel.from_pretrained(base, dir)` loads it
without domainbench, and its adapter_config.json names the base model dir.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import torch

from harness.errors import DomainbenchError
from harness.manifest import input_hash, reusable
from harness.models import load_model
from tuning.artifact import (
    artifact_path,
    augmentation_inputs,
    manifest_for,
    publish_model,
    training_code,
    work_path,
)
from tuning.augment.synthetic_qa import Generator
from tuning.data import training_data
from tuning.loop import train
from tuning.recipe import Recipe

PEFT_METHODS = {"lora": "LoraConfig", "prefix": "PrefixTuningConfig", "ia3": "IA3Config", "prompt": "PromptTuningConfig"}
# Prefix tuning feeds trained past_key_values into every layer; with gradient checkpointing it
# fails (peft issue 869), so the pair is refused before loading anything.
_NO_GRADIENT_CHECKPOINTING = ("prefix",)


def peft_config(adapter: dict, model: torch.nn.Module):
    """The PEFT config for `adapter` ({type, ...fields}), checked against `model`'s modules."""
    import peft

    options = dict(adapter)
    method = options.pop("type", None)
    if method not in PEFT_METHODS:
        raise DomainbenchError(f"method.adapter.type: {method!r}; expected one of {', '.join(PEFT_METHODS)}")
    config_class = getattr(peft, PEFT_METHODS[method])
    known = {f.name for f in fields(config_class)} - {"task_type", "peft_type"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DomainbenchError(f"method.adapter.{unknown[0]}: not a field of peft.{config_class.__name__}; "
                               f"fields: {', '.join(sorted(known))}")
    for key in ("target_modules", "feedforward_modules"):
        if key in options:
            check_target_modules(model, options[key], field=f"method.adapter.{key}")
    try:
        return config_class(task_type="CAUSAL_LM", **options)
    except (TypeError, ValueError) as exc:
        raise DomainbenchError(f"method.adapter: peft.{config_class.__name__} refused it: {exc}") from exc


def check_target_modules(model: torch.nn.Module, targets, *, field: str) -> None:
    """Every target names a module (by last name or dotted suffix); else list the model's names."""
    if isinstance(targets, str):
        return  # a regex or "all-linear": PEFT matches it itself
    names = [name for name, _ in model.named_modules() if name]
    missing = [t for t in targets if not any(name == t or name.endswith(f".{t}") for name in names)]
    if missing:
        linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                         if isinstance(module, torch.nn.Linear)})
        others = sorted({name.rsplit(".", 1)[-1] for name in names if not name.rsplit(".", 1)[-1].isdigit()} - set(linear))
        raise DomainbenchError(f"{field}: {', '.join(missing)} not in {type(model).__name__}; its linear modules: "
                               f"{', '.join(linear)}; other modules: {', '.join(others)}")


def tune_adapter(model_spec: str, suite, recipe: Recipe, *, output: Path | None = None,
                 resume: bool = False, generator: Generator | None = None) -> Path:
    """Train the adapter of `recipe.method.adapter` on `model_spec`; returns the adapter dir.

    `generator` writes the pairs of a synthetic-qa augmentation (tuning/augment/synthetic_qa.py).
    """
    from accelerate.utils import set_seed
    from peft import get_peft_model

    adapter = recipe.method["adapter"]
    method = adapter.get("type")
    if recipe.train.gradient_checkpointing and method in _NO_GRADIENT_CHECKPOINTING:
        raise DomainbenchError(f"train.gradient_checkpointing: {method} tuning does not combine with gradient "
                               "checkpointing (peft issue 869); set it to false")
    loaded = load_model(model_spec, device="cpu", dtype="float32")
    config = peft_config(adapter, loaded.model)
    data = training_data(recipe.data, loaded.tokenizer, suite, seed=recipe.seed, augment=recipe.augment,
                         generator=generator)
    inputs = {"strategy": recipe.strategy, "base_model": {"spec": model_spec, "fingerprint": loaded.fingerprint},
              "suite": {"name": suite.name, "fingerprint": suite.fingerprint}, "data": data.summary,
              "recipe": recipe.as_dict(), **augmentation_inputs(recipe.augment, generator),
              "code": training_code("peft")}
    key = input_hash(inputs)
    artifact = artifact_path(recipe.strategy, key, output)
    if reusable(artifact, key):
        return artifact
    set_seed(recipe.seed)  # adapter initialisation draws random numbers
    model = get_peft_model(loaded.model, config)
    result = train(model, data.train, data.dev, recipe.train, work_dir=work_path(artifact),
                   pad_id=loaded.tokenizer.pad_token_id, resume=resume, description=f"{method} {model_spec}")
    manifest = manifest_for(strategy=recipe.strategy, kind="peft_adapter", key=key, inputs=inputs,
                            recipe=recipe.as_dict(), result=result, model=model,
                            augmentation_cost=data.augmentation_cost,
                            extra={"base_model_path": str(loaded.path),
                                   "load": "peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("
                                           "base_model_path), dir)"})
    return publish_model(artifact, model, loaded.tokenizer, manifest, augmentation=data.augmentation)
