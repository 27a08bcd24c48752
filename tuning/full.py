"""Full fine-tuning: every weight trains, except optionally the embeddings or the bottom layers.

The artifact is a `save_pretrained` dir with the tokenizer, loadable by `load_model(dir)`.
"""

from __future__ import annotations

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
from tuning.loop import train, transformer_layers
from tuning.recipe import Recipe


def tune_full(model_spec: str, suite, recipe: Recipe, *, output: Path | None = None, resume: bool = False,
              generator: Generator | None = None) -> Path:
    """Fine-tune `model_spec` on `suite` (a loaded Suite) per `recipe`; returns the artifact dir.

    `generator` writes the pairs of a synthetic-qa augmentation (tuning/augment/synthetic_qa.py).
    """
    loaded = load_model(model_spec, device="cpu", dtype="float32")
    data = training_data(recipe.data, loaded.tokenizer, suite, seed=recipe.seed, augment=recipe.augment,
                         generator=generator)
    inputs = {"strategy": "full", "base_model": {"spec": model_spec, "fingerprint": loaded.fingerprint},
              "suite": {"name": suite.name, "fingerprint": suite.fingerprint}, "data": data.summary,
              "recipe": recipe.as_dict(), **augmentation_inputs(recipe.augment, generator),
              "code": training_code()}
    key = input_hash(inputs)
    artifact = artifact_path("full", key, output)
    if reusable(artifact, key):
        return artifact
    model = loaded.model
    freeze(model, embeddings=recipe.method["freeze_embeddings"], bottom_layers=recipe.method["freeze_layers"])
    result = train(model, data.train, data.dev, recipe.train, work_dir=work_path(artifact),
                   pad_id=loaded.tokenizer.pad_token_id, resume=resume, description=f"full {model_spec}")
    manifest = manifest_for(strategy="full", kind="model", key=key, inputs=inputs, recipe=recipe.as_dict(),
                            result=result, model=model, augmentation_cost=data.augmentation_cost,
                            extra={"load": "harness.models.load_model(dir) or AutoModelForCausalLM.from_pretrained(dir)"})
    return publish_model(artifact, model, loaded.tokenizer, manifest, augmentation=data.augmentation)


def freeze(model: torch.nn.Module, *, embeddings: bool, bottom_layers: int) -> None:
    """Stop gradients to the input embeddings (a tied lm_head with them) and the bottom N layers."""
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    if embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    layers = transformer_layers(model)
    if not 0 <= bottom_layers <= len(layers):
        raise DomainbenchError(f"method.freeze_layers: {bottom_layers}; the model has {len(layers)} layers")
    for layer in layers[:bottom_layers]:
        layer.requires_grad_(False)

