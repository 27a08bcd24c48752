"""Tuned artifacts: a standard directory plus its manifest (`harness/manifest.py`), cached by input hash.

A full or distilled model is a `save_pretrained` dir (`harness.models.load_model(dir)` loads it);
an adapter is a PEFT adapter dir (`peft.PeftModel.from_pretrained(base, dir)` loads it). The
manifest records the strategy, the base model and its fingerprint, the resolved recipe, the data
fingerprints and the cost, and the hash of all inputs: a rerun with the same inputs reuses the
artifact, a change to any of them trains a new one.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from harness.atomic import staged_dir
from harness.manifest import code_versions, write_manifest
from harness.models import cache_dir

SCHEMA_VERSION = 1

# Part of every tuned artifact's cache key. Bump it with a change in tuning/ that changes what a
# recipe trains — the loop, the loss, the data a recipe reads, batching, freezing, a strategy's set-up —
# so artifacts the old code trained are trained again instead of reused. A change that trains the
# same weights (a refactor, a message) leaves it.
TRAINING_CODE = 1


def artifact_path(strategy: str, key: str, output: Path | None = None) -> Path:
    """`output` when given, else `cache_dir()/artifacts/<strategy>-<hash prefix>`."""
    return Path(output) if output is not None else cache_dir() / "artifacts" / f"{strategy}-{key[:16]}"


def work_path(artifact: Path) -> Path:
    """Where checkpoints of the run that makes `artifact` live (beside it, kept until it is done)."""
    return artifact.with_name(f"{artifact.name}.work")


def publish(artifact: Path, save, manifest: dict) -> Path:
    """Write an artifact atomically: `save(staging_dir)`, then the manifest, then one rename."""
    artifact = Path(artifact)
    with staged_dir(artifact) as staging:
        save(staging)
        manifest = {**manifest, "cost": {**manifest.get("cost", {}), "artifact_bytes": directory_bytes(staging)}}
        write_manifest(staging, manifest)
    shutil.rmtree(work_path(artifact), ignore_errors=True)
    return artifact


def publish_model(artifact: Path, model, tokenizer, manifest: dict, *, augmentation=None) -> Path:
    """Publish a trained model or adapter with its tokenizer; under DDP only the main process writes.

    `augmentation` (the training data's AugmentReport, if augmented) is written beside it as its data card.
    """
    from engines.distributed import is_main_process
    from tuning.augment.card import write_data_card

    if not is_main_process():
        return Path(artifact)

    def save(directory: Path) -> None:
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        canonical_adapter_config(directory)
        if augmentation is not None:
            write_data_card(augmentation, directory)

    return publish(artifact, save, manifest)


# PEFT keeps these as sets and writes them in set order, which differs from process to process
# (string hashing is randomised): the same adapter would get a new fingerprint on every rebuild.
_SET_VALUED = ("target_modules", "modules_to_save", "feedforward_modules", "exclude_modules")


def canonical_adapter_config(directory: Path) -> None:
    """Rewrite a PEFT adapter_config.json with its module sets sorted and its keys in order (a no-op elsewhere)."""
    path = Path(directory) / "adapter_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in _SET_VALUED:
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def training_code(*libraries: str) -> dict[str, str | int | None]:
    """What trains an artifact: domainbench's training code and the libraries it runs on (its cache key holds it)."""
    return {**code_versions("torch", "transformers", *libraries), "training": TRAINING_CODE}


def augmentation_inputs(augment, generator=None) -> dict:
    """What an augmented recipe adds to an artifact's inputs: its augmentation key, with the synthetic-qa
    generator's fingerprint; {} for a plain recipe, whose hash stays what it was before augmentation."""
    from tuning.augment.settings import augmentation_key

    key = augmentation_key(augment, generator.fingerprint if generator else None)
    return {"augment": key} if key else {}


def manifest_for(*, strategy: str, kind: str, key: str, inputs: dict, recipe: dict, result, model,
                 extra: dict | None = None, augmentation_cost: dict | None = None) -> dict:
    """The manifest: how the artifact was made, what it cost, and how its dev loss moved.

    `augmentation_cost` (tuning.data.augmentation_cost) joins the cost block, outside the inputs:
    timings differ from build to build and must not change the cache key.
    """
    state = result.state
    cost = training_cost(result, model)
    if augmentation_cost:
        cost["augmentation"] = augmentation_cost
    return {
        "schema_version": SCHEMA_VERSION,
        "strategy": strategy,
        "kind": kind,
        "input_hash": key,
        "inputs": inputs,
        "recipe": recipe,
        "cost": cost,
        "quality": {"dev_loss_before": state.dev_loss_before,
                    "dev_loss_after": state.best_dev_loss if state.dev_losses else None,
                    "dev_losses": state.dev_losses, "steps": state.step, "stopped_early": state.stopped_early,
                    "train_loss_curve": state.losses},
        "versions": code_versions("torch", "transformers", "peft", "accelerate"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }


# A student whose dev cross-entropy exceeds its teacher's by more than ln 2 nats has more than twice
# the teacher's perplexity: distillation did not work at this budget, whatever its own loss says.
STUDENT_GAP_NATS = math.log(2)


def convergence(manifest: dict) -> dict:
    """Whether training worked at its budget, judged from the manifest's dev losses.

    Not converged: the best dev loss never got below the loss before training (the published
    weights are no better than the starting ones), or a distilled student's dev perplexity is
    more than twice its teacher's. Without a dev set there is nothing to judge (`converged` None).
    """
    quality = manifest.get("quality") or {}
    before, best = quality.get("dev_loss_before"), quality.get("dev_loss_after")
    curve = quality.get("dev_losses") or []
    verdict = {"converged": None, "reason": "no dev set: convergence not judged", "dev_loss_before": before,
               "dev_loss_best": best, "dev_loss_final": curve[-1][1] if curve else None, "dev_losses": curve}
    if before is None or best is None:
        return verdict
    verdict["converged"], verdict["reason"] = True, f"dev loss {before:.3f} -> best {best:.3f}"
    if best >= before:
        verdict["converged"] = False
        verdict["reason"] = f"dev loss never fell below its starting {before:.3f} (best {best:.3f})"
    student = manifest.get("student_vs_teacher") or {}
    gap = _difference(student.get("dev_ce_student"), student.get("dev_ce_teacher"))
    if gap is not None and gap > STUDENT_GAP_NATS:
        verdict["converged"] = False
        verdict["reason"] = f"the student's dev perplexity is {math.exp(gap):.1f}x its teacher's"
    return verdict


def _difference(a, b) -> float | None:
    return a - b if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None


def training_cost(result, model) -> dict:
    """Wall time, tokens, tokens/s, peak memory and parameter counts (artifact size added at publish)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"wall_seconds": result.wall_seconds, "train_seconds": result.state.train_seconds,
            "tokens_seen": result.state.tokens_seen, "tokens_per_second": result.tokens_per_second,
            "peak_memory_bytes": result.peak_memory_bytes, "peak_memory_kind": result.peak_memory_kind,
            "trainable_parameters": trainable, "total_parameters": total, "processes": result.world_size,
            "mixed_precision": result.mixed_precision}


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
