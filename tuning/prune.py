"""Pruned form: the least influential decoder layers removed, so the served model really shrinks.

Structured, not masked: the saved model has fewer layers, parameters and bytes, and loads with
plain `AutoModelForCausalLM.from_pretrained(dir)`. A layer's importance is its Block Influence
(ShortGPT, Men et al. 2024) measured on calibration texts from the suite's train split:

    BI(layer) = 1 - mean over real tokens of cos(layer input, layer output)

A layer that barely turns the residual stream changes least of what follows when it is gone. No
layer is kept by its position: on SmolLM2-135M the first and last layers measure the highest
scores of all, so the score itself keeps them. `tuning/recipes/prune.yaml` documents the knobs;
`method.heal_steps > 0` adds a short full fine-tune through the shared training loop.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from pathlib import Path

import torch
import yaml

from engines.tokens import prefix_token_id
from harness.atomic import staged_dir
from harness.errors import DomainbenchError
from harness.manifest import code_versions, input_hash, reusable, write_manifest
from harness.models import first_line, load_model
from tuning.artifact import SCHEMA_VERSION, training_code, work_path
from tuning.batches import collate
from tuning.data import (
    corpus_texts,
    examples_fingerprint,
    subsample,
    suite_pairs,
    training_data,
)
from tuning.loop import train, transformer_layers
from tuning.recipe import RECIPES_DIR, load_recipe

RECIPE = RECIPES_DIR / "prune.yaml"
SCORES = ("block_influence",)
# Decoders whose layers are interchangeable blocks on one residual stream under `model.layers`, with
# per-layer state only in `layer_idx` and `config.layer_types` (both renumbered by `remove_layers`).
LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3")
_CALIBRATION_BATCH = 4
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def load_prune_recipe(*, config: Path | None = None, profile: str | None = None,
                      overrides: dict | None = None) -> dict:
    """prune.yaml's defaults and their profile, then `config` and its own profile, then `overrides`; validated.

    The same layering as `tuning.recipe.load_recipe`, for a recipe that has no data or train section.
    """
    defaults = yaml.safe_load(RECIPE.read_text())
    profiles = defaults.pop("profiles")
    if profile is not None and profile not in profiles:
        raise DomainbenchError(f"--profile {profile!r}: expected one of {', '.join(profiles)}")
    layers = [(profiles.get(profile), f"{RECIPE} profiles.{profile}")]
    if config is not None:
        user = _read_user_recipe(Path(config))
        user_profiles = user.pop("profiles", None) or {}
        layers += [(user, str(config)), (user_profiles.get(profile), f"{config} profiles.{profile}")]
    layers.append((overrides, "overrides"))
    resolved = copy.deepcopy(defaults)
    resolved["profile"] = profile
    for update, where in layers:
        if update:
            _overlay(resolved, update, defaults, where=where)
            check_prune_recipe(resolved, where=where)  # after each layer, so the message names its file
    return resolved


def check_prune_recipe(recipe: dict, *, where: str = "recipe") -> None:
    """Refuse a recipe whose values cannot prune anything, naming the field."""
    if recipe.get("strategy", "prune") != "prune":
        raise DomainbenchError(f"{where}: strategy: {recipe['strategy']!r} but this is a prune recipe")
    if not _whole_number(recipe.get("seed"), least=0):
        raise DomainbenchError(f"{where}: seed: expected a whole number >= 0, got {recipe.get('seed')!r}")
    method = recipe.get("method")
    if not isinstance(method, dict):
        raise DomainbenchError(f"{where}: method: expected a mapping")
    ratio = method.get("ratio")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise DomainbenchError(f"{where}: method.ratio: expected the share of layers to remove, strictly between "
                               f"0 and 1, got {ratio!r}")
    if method.get("score") not in SCORES:
        raise DomainbenchError(f"{where}: method.score: {method.get('score')!r}; expected one of {', '.join(SCORES)}")
    for name, least in (("calibration_examples", 1), ("calibration_seq_len", 2), ("heal_steps", 0)):
        if not _whole_number(method.get(name), least=least):
            raise DomainbenchError(f"{where}: method.{name}: expected a whole number >= {least}, "
                                   f"got {method.get(name)!r}")


def calibration_texts(suite, n: int, seed: int) -> list[str]:
    """`n` texts of a loaded suite's train split, a seeded sample: its corpus, else its tasks' train examples."""
    if suite.corpus is not None:
        texts = corpus_texts(suite.corpus, "train")
    else:
        texts = [prompt + completion for prompt, completion in suite_pairs(suite, "train", [])]
    if not texts:
        raise DomainbenchError(f"suite {suite.name}: no train-split texts to calibrate pruning on")
    return subsample(texts, n, seed=seed)


def prune_model(model_dir: Path, out_dir: Path, recipe: dict, *, calibration_texts: list[str], suite=None,
                device: str = "cpu") -> dict:
    """Remove the recipe's share of `model_dir`'s decoder layers, least influential first; publish at `out_dir`.

    Returns the manifest, also written to `out_dir`. `calibration_texts` must come from a train
    split (`calibration_texts(suite, n, seed)` picks them); `suite` is needed only for healing.
    An `out_dir` made from the same inputs is reused as it is.
    """
    started = time.perf_counter()
    check_prune_recipe(recipe)
    method = recipe["method"]
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    config = _llama_family_config(model_dir)
    n_remove = removed_layer_count(method["ratio"], config.num_hidden_layers)
    if not calibration_texts:
        raise DomainbenchError("pruning needs calibration texts from a train split; got none")
    if method["heal_steps"] and suite is None:
        raise DomainbenchError("method.heal_steps: healing trains on a suite's train split; none was given")
    loaded = load_model(str(model_dir), device=device, dtype="float32")
    calibration = calibration_examples(calibration_texts, loaded.tokenizer, method["calibration_seq_len"])
    inputs = {"form": "pruned", "model": {"fingerprint": loaded.fingerprint}, "recipe": recipe, "code": training_code(),
              "calibration": {"texts": len(calibration), "tokens": sum(len(e["input_ids"]) for e in calibration),
                              "fingerprint": examples_fingerprint(calibration)}}
    healing = _healing_plan(recipe, loaded.tokenizer, suite) if method["heal_steps"] else None
    if healing is not None:
        inputs["heal"] = {"suite": {"name": suite.name, "fingerprint": suite.fingerprint},
                          "train": dataclasses.asdict(healing[0]), "data": healing[1].summary}
    key = input_hash(inputs)
    if existing := reusable(out_dir, key):
        return existing

    scoring_started = time.perf_counter()
    scores = block_influence(loaded.model, calibration, pad_id=loaded.tokenizer.pad_token_id)
    scoring_seconds = time.perf_counter() - scoring_started
    removed = least_influential(scores, n_remove)
    kept = [index for index in range(len(scores)) if index not in removed]
    model, parameters_before = loaded.model, _parameters(loaded.model)
    remove_layers(model, removed)
    heal_record = heal(model, loaded.tokenizer, *healing, work_dir=work_path(out_dir)) if healing else None

    model.to(_saved_dtype(config))
    manifest = {
        "schema_version": SCHEMA_VERSION, "form": "pruned", "kind": "model", "input_hash": key, "inputs": inputs,
        "source": str(model_dir), "recipe": recipe,
        "pruning": {"ratio": method["ratio"], "score": method["score"], "layer_scores": scores,
                    "removed_layers": removed, "kept_layers": kept},
        "size": {"layers_before": len(scores), "layers_after": len(kept),
                 "parameters_before": parameters_before, "parameters_after": _parameters(model),
                 "weight_bytes_before": weight_bytes(model_dir)},
        "heal": heal_record,
        "versions": code_versions("torch", "transformers"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load": "harness.models.load_model(dir) or AutoModelForCausalLM.from_pretrained(dir)",
    }
    with staged_dir(out_dir) as staging:
        model.save_pretrained(staging)
        loaded.tokenizer.save_pretrained(staging)
        manifest["size"]["weight_bytes_after"] = weight_bytes(staging)
        manifest["cost"] = {"wall_seconds": time.perf_counter() - started, "scoring_seconds": scoring_seconds}
        write_manifest(staging, manifest)
    return manifest


def removed_layer_count(ratio: float, n_layers: int) -> int:
    """round(ratio * n_layers), half up; refused when that removes no layer or every layer."""
    count = int(ratio * n_layers + 0.5)
    if count < 1:
        raise DomainbenchError(f"method.ratio: {ratio} of {n_layers} layers removes none; "
                               f"at least {0.5 / n_layers:.3g} removes one")
    if count >= n_layers:
        raise DomainbenchError(f"method.ratio: {ratio} of {n_layers} layers leaves none; "
                               f"keep it below {(n_layers - 0.5) / n_layers:.3g}")
    return count


def remove_layers(model: torch.nn.Module, removed: list[int]) -> None:
    """Delete the decoder layers at `removed` from `model` in place and renumber the rest.

    Renumbered: `config.num_hidden_layers`, `config.layer_types` where the config has it, and the
    `layer_idx` each attention module keeps to find its slot in the KV cache.
    """
    layers = transformer_layers(model)
    kept = [index for index in range(len(layers)) if index not in removed]
    for index in sorted(removed, reverse=True):
        del layers[index]
    for new_index, layer in enumerate(layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    model.config.num_hidden_layers = len(kept)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[index] for index in kept]


def calibration_examples(texts: list[str], tokenizer, seq_len: int) -> list[dict]:
    """Each text's first tokens after the prefix token, as the engine scores them: seq_len tokens at most."""
    prefix = prefix_token_id(tokenizer)
    examples = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        sequence = [prefix, *ids[:seq_len - 1]]
        examples.append({"input_ids": sequence, "labels": sequence})
    return examples


def block_influence(model: torch.nn.Module, examples: list[dict], *, pad_id: int) -> list[float]:
    """Each decoder layer's Block Influence on `examples`: 1 - mean cosine(input, output) over real tokens.

    Hooks read each layer's own input and output. `output_hidden_states` would serve every layer
    but the last: transformers 5 reports the last entry after the final norm, whose per-channel
    weights turn its direction, so the last layer would look more influential than it is.
    """
    layers = transformer_layers(model)
    cosine_sums = torch.zeros(len(layers), dtype=torch.float64)
    batch_mask: dict[str, torch.Tensor] = {}

    def record(index: int):
        def hook(module, args, kwargs, output):
            hidden_in = args[0] if args else kwargs["hidden_states"]
            hidden_out = output[0] if isinstance(output, tuple) else output
            cosine = torch.nn.functional.cosine_similarity(hidden_in.float(), hidden_out.float(), dim=-1)
            cosine_sums[index] += (cosine * batch_mask["real"]).sum().double().cpu()
        return hook

    handles = [layer.register_forward_hook(record(index), with_kwargs=True) for index, layer in enumerate(layers)]
    device = next(model.parameters()).device
    tokens = 0
    try:
        with torch.no_grad():
            for start in range(0, len(examples), _CALIBRATION_BATCH):
                batch = collate(examples[start:start + _CALIBRATION_BATCH], pad_id, device)
                batch_mask["real"] = batch["attention_mask"].to(torch.float32)
                # logits_to_keep=1: the scores need only the layers, not the vocabulary projection.
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                      logits_to_keep=1)
                tokens += int(batch["attention_mask"].sum())
    finally:
        for handle in handles:
            handle.remove()
    return (1.0 - cosine_sums / tokens).tolist()


def least_influential(scores: list[float], count: int) -> list[int]:
    """Indices of the `count` lowest scores, ascending (ties go to the lower index)."""
    return sorted(sorted(range(len(scores)), key=lambda index: scores[index])[:count])


def heal(model: torch.nn.Module, tokenizer, settings, data, *, work_dir: Path) -> dict:
    """Fine-tune the pruned model briefly through the shared loop; returns what the manifest records."""
    result = train(model, data.train, data.dev, settings, work_dir=work_dir, pad_id=tokenizer.pad_token_id,
                   description="heal pruned model")
    shutil.rmtree(work_dir, ignore_errors=True)
    state = result.state
    return {"steps": state.step, "stopped_early": state.stopped_early, "dev_loss_before": state.dev_loss_before,
            "dev_loss_after": state.best_dev_loss if state.dev_losses else None, "dev_losses": state.dev_losses,
            "train_loss_curve": state.losses, "wall_seconds": result.wall_seconds, "tokens_seen": state.tokens_seen}


def weight_bytes(model_dir: Path) -> int:
    """Bytes of the weight files (safetensors, bin) in a model dir."""
    return sum(f.stat().st_size for f in Path(model_dir).iterdir() if f.is_file() and f.suffix in _WEIGHT_SUFFIXES)


def _healing_plan(recipe: dict, tokenizer, suite):
    """The full strategy's optimizer settings and data under the recipe's profile, for `heal_steps` steps.

    Warm-up is capped at a tenth of the steps, and evaluation and checkpoint intervals at the
    steps: the full recipe's are sized for thousands of steps, and a warm-up longer than the run
    would never reach the learning rate.
    """
    steps = recipe["method"]["heal_steps"]
    full = load_recipe("full", profile=recipe.get("profile"))
    settings = dataclasses.replace(full.train, max_steps=steps, seed=recipe["seed"],
                                   warmup_steps=min(full.train.warmup_steps, steps // 10),
                                   eval_every=min(full.train.eval_every, steps),
                                   checkpoint_every=min(full.train.checkpoint_every, steps))
    return settings, training_data(full.data, tokenizer, suite, seed=recipe["seed"])


def _llama_family_config(model_dir: Path):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise DomainbenchError(f"model {model_dir}: cannot read its config: {first_line(exc)}") from exc
    if config.model_type not in LLAMA_FAMILY:
        raise DomainbenchError(f"model {model_dir}: a {config.model_type!r} model; layer pruning supports "
                               f"Llama-family decoders ({', '.join(LLAMA_FAMILY)})")
    return config


def _saved_dtype(config) -> torch.dtype:
    """The source's weight dtype, so that the byte counts compare like with like (scores are taken in fp32)."""
    return config.dtype if isinstance(config.dtype, torch.dtype) else torch.float32


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _overlay(target: dict, update, defaults: dict, *, where: str) -> None:
    """Put `update`'s fields over `target`; each must be a field of prune.yaml."""
    if not isinstance(update, dict):
        raise DomainbenchError(f"{where}: expected a mapping of recipe fields")
    for key, value in update.items():
        if key not in defaults:
            raise DomainbenchError(f"{where}: {key}: unknown field; expected one of {', '.join(defaults)}")
        if key != "method":
            target[key] = copy.deepcopy(value)
            continue
        if not isinstance(value, dict):
            raise DomainbenchError(f"{where}: method: expected a mapping")
        for name in value:
            if name not in defaults["method"]:
                raise DomainbenchError(f"{where}: method.{name}: unknown field; expected one of "
                                       f"{', '.join(defaults['method'])}")
        target["method"].update(copy.deepcopy(value))


def _read_user_recipe(path: Path) -> dict:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DomainbenchError(f"recipe {path}: cannot read: {exc.strerror}") from exc
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DomainbenchError(f"recipe {path}: not a UTF-8 YAML file: {first_line(exc)}") from exc
    if not isinstance(document, dict):
        raise DomainbenchError(f"recipe {path}: expected a mapping of recipe fields")
    return document


def _whole_number(value, *, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least
