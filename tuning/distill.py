"""Distillation: a smaller student trained on a teacher's soft targets plus the hard labels.

By default the teacher is the `finetuned` artifact (the full strategy on the same model, suite
and profile, reused when cached) and the student is the teacher with every other layer kept, the
DistilBERT / DistilGPT2 initialisation. The loss per labelled token is
`alpha_kl * T² * KL(teacher_T || student_T) + (1 - alpha_kl) * CE`. The manifest reports the
student's size and speed beside the teacher's.
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import torch

from harness.errors import DomainbenchError
from harness.manifest import input_hash, reusable
from harness.models import load_model
from tuning.artifact import (
    artifact_path,
    augmentation_inputs,
    directory_bytes,
    manifest_for,
    publish_model,
    training_code,
    work_path,
)
from tuning.augment.synthetic_qa import Generator
from tuning.batches import collate
from tuning.data import training_data
from tuning.loop import final_hidden, mean_dev_loss, train, transformer_layers, unwrap
from tuning.loss import distillation_loss_sums
from tuning.recipe import Recipe, load_recipe

_LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")


def tune_distill(model_spec: str, suite, recipe: Recipe, *, output: Path | None = None, resume: bool = False,
                 teacher: Path | None = None, generator: Generator | None = None) -> Path:
    """Distil a student from the recipe's teacher; returns the student's model dir.

    `teacher` is the finetuned model dir to use when the recipe's teacher is `finetuned` (the
    runner passes the one it evaluates); without it the default full recipe makes one.
    `generator` writes the pairs of a synthetic-qa augmentation (tuning/augment/synthetic_qa.py).
    """
    method = recipe.method
    teacher_spec = str(teacher) if teacher is not None and method["teacher"] == "finetuned" else (
        _teacher_spec(model_spec, suite, method["teacher"], recipe))
    teacher = load_model(teacher_spec, device="cpu", dtype="float32")
    if method["student"] is None:
        student, student_spec = student_from_teacher(teacher.model, method["keep_layers"]), "derived"
    else:
        student_model = load_model(method["student"], device="cpu", dtype="float32")
        check_same_tokenizer(teacher, student_model)
        student, student_spec = student_model.model, method["student"]
    data = training_data(recipe.data, teacher.tokenizer, suite, seed=recipe.seed, augment=recipe.augment,
                         generator=generator)
    inputs = {"strategy": "distill", "base_model": {"spec": model_spec},
              "teacher": {"spec": method["teacher"], "fingerprint": teacher.fingerprint}, "student": student_spec,
              "suite": {"name": suite.name, "fingerprint": suite.fingerprint}, "data": data.summary,
              "recipe": recipe.as_dict(), **augmentation_inputs(recipe.augment, generator),
              "code": training_code()}
    key = input_hash(inputs)
    artifact = artifact_path("distill", key, output)
    if reusable(artifact, key):
        return artifact
    teacher.model.requires_grad_(False)
    loss_fn = distillation_objective(teacher.model, temperature=method["temperature"], alpha_kl=method["alpha_kl"],
                                     chunk_size=recipe.train.loss_chunk_size)
    student.train()
    result = train(student, data.train, data.dev, recipe.train, work_dir=work_path(artifact),
                   pad_id=teacher.tokenizer.pad_token_id, loss_fn=loss_fn, resume=resume,
                   description=f"distill {model_spec}")
    pad_id = teacher.tokenizer.pad_token_id
    teacher.model.to(next(student.parameters()).device)
    comparison = {"student": model_size_and_speed(student, data.dev, pad_id),
                  "teacher": model_size_and_speed(teacher.model, data.dev, pad_id),
                  "teacher_path": str(teacher.path), "teacher_bytes": directory_bytes(teacher.path),
                  "dev_ce_student": mean_dev_loss(student, data.dev, recipe.train, pad_id),
                  "dev_ce_teacher": mean_dev_loss(teacher.model, data.dev, recipe.train, pad_id)}
    manifest = manifest_for(strategy="distill", kind="model", key=key, inputs=inputs, recipe=recipe.as_dict(),
                            result=result, model=student, augmentation_cost=data.augmentation_cost,
                            extra={"student_vs_teacher": comparison,
                                   "load": "harness.models.load_model(dir) or AutoModelForCausalLM.from_pretrained(dir)"})
    return publish_model(artifact, student, teacher.tokenizer, manifest, augmentation=data.augmentation)


def student_from_teacher(teacher: torch.nn.Module, keep_layers) -> torch.nn.Module:
    """A copy of `teacher` with only the layers in `keep_layers` ("alternate": 0, 2, 4, …)."""
    from transformers import AutoModelForCausalLM

    n_layers = len(transformer_layers(teacher))
    keep = list(range(0, n_layers, 2)) if keep_layers == "alternate" else keep_layers
    if (not isinstance(keep, list) or not keep or not all(isinstance(i, int) and 0 <= i < n_layers for i in keep)
            or len(set(keep)) != len(keep)):
        raise DomainbenchError(f"method.keep_layers: {keep_layers!r}; expected `alternate` or a list of distinct "
                               f"layer indices in 0..{n_layers - 1}")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in keep]
    student = AutoModelForCausalLM.from_config(config, dtype=next(teacher.parameters()).dtype)
    renumber = {old: new for new, old in enumerate(keep)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        match = _LAYER_INDEX.search(name)
        if match is not None:
            if int(match[1]) not in renumber:
                continue
            name = name[:match.start()] + f".layers.{renumber[int(match[1])]}." + name[match.end():]
        state[name] = tensor.detach().clone()
    student.load_state_dict(state)
    return student


def check_same_tokenizer(teacher, student) -> None:
    """Refuse a teacher and student whose tokenizers differ: the KL compares logits token by token."""
    teacher_vocab, student_vocab = teacher.tokenizer.get_vocab(), student.tokenizer.get_vocab()
    if teacher_vocab != student_vocab:
        differing = len(set(teacher_vocab.items()) ^ set(student_vocab.items()))
        raise DomainbenchError(
            f"teacher {teacher.spec} and student {student.spec} have different tokenizers ({len(teacher_vocab)} vs "
            f"{len(student_vocab)} tokens, {differing} entries differ); distillation matches their next-token "
            "distributions token by token, so choose a student with the teacher's tokenizer")
    sizes = (teacher.model.get_output_embeddings().weight.shape[0], student.model.get_output_embeddings().weight.shape[0])
    if sizes[0] != sizes[1]:
        raise DomainbenchError(f"teacher {teacher.spec} and student {student.spec}: output vocabularies of "
                               f"{sizes[0]} and {sizes[1]} rows; they must match")


def distillation_objective(teacher: torch.nn.Module, *, temperature: float, alpha_kl: float, chunk_size: int):
    """loss_fn(student, batch) for the training loop: the weighted soft + hard loss, summed."""
    if temperature <= 0 or not 0.0 <= alpha_kl <= 1.0:
        raise DomainbenchError(f"method: temperature {temperature} must be > 0 and alpha_kl {alpha_kl} in [0, 1]")

    def loss_fn(student, batch):
        with torch.no_grad():
            teacher_hidden = final_hidden(teacher, batch)
        kl, ce, n = distillation_loss_sums(final_hidden(student, batch), unwrap(student).get_output_embeddings(),
                                           teacher_hidden, teacher.get_output_embeddings(), batch["labels"],
                                           temperature=temperature, chunk_size=chunk_size)
        return alpha_kl * kl + (1.0 - alpha_kl) * ce, n

    return loss_fn


def model_size_and_speed(model: torch.nn.Module, examples: list[dict], pad_id: int, *, batches: int = 4,
                         batch_size: int = 4) -> dict:
    """Parameters, layers, and forward tokens/s over up to `batches` batches of examples."""
    device = next(model.parameters()).device
    model.eval()
    tokens, seconds = 0, 0.0
    with torch.no_grad():
        for start in range(0, min(len(examples), batches * batch_size), batch_size):
            batch = collate(examples[start:start + batch_size], pad_id, device)
            began = time.perf_counter()
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
            seconds += time.perf_counter() - began
            tokens += int(batch["attention_mask"].sum())
    return {"parameters": sum(p.numel() for p in model.parameters()), "layers": len(transformer_layers(model)),
            "forward_tokens_per_second": tokens / seconds if seconds else 0.0}


def _teacher_spec(model_spec: str, suite, teacher: str, recipe: Recipe) -> str:
    if teacher == "base":
        return model_spec
    if teacher == "finetuned":
        from tuning.full import tune_full

        return str(tune_full(model_spec, suite, load_recipe("full", profile=recipe.profile)))
    return teacher
