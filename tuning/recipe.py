"""Recipes: a strategy's YAML defaults, a user's overrides and a profile, validated before step one.

`tuning/recipes/<strategy>.yaml` lists every knob with its default and is the documentation of
them. A user recipe (`--config`) overrides any subset; `--profile quick|full` applies that file's
profile on top. Validation names the file and the dotted field that is wrong.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from harness.errors import DomainbenchError
from tuning.augment.settings import AugmentConfig, augment_config

RECIPES_DIR = Path(__file__).parent / "recipes"
STRATEGIES = ("full", "lora", "prefix", "ia3", "prompt", "distill")
PROFILES = ("quick", "full")
SCHEDULES = ("cosine", "linear", "constant_with_warmup")
# auto: bf16 autocast where the hardware computes bf16 natively (GPUs, CPUs with AVX-512 BF16 or
# AMX; tuning.loop has the figures), fp32 elsewhere. Not yes/no: YAML 1.1 reads those as booleans.
PRECISIONS = ("auto", "bf16", "fp32")
MIXTURE_SOURCES = ("cpt", "sft")
# Fields whose defaults are null or whose contents another library validates (the PEFT config).
_OPEN_FIELDS = ("method.adapter", "method.student", "method.keep_layers")


@dataclass(frozen=True)
class DataConfig:
    mixture: dict
    tasks: list
    seq_len: int
    max_train_examples: int
    max_dev_examples: int


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int
    batch_size: int
    grad_accum: int
    learning_rate: float
    weight_decay: float
    schedule: str
    warmup_steps: int
    max_grad_norm: float
    eval_every: int
    early_stopping_patience: int
    checkpoint_every: int
    keep_checkpoints: int
    loss_chunk_size: int
    gradient_checkpointing: bool
    mixed_precision: str = "auto"
    packing: bool = True
    compile: bool = False
    seed: int = 0


@dataclass(frozen=True)
class Recipe:
    strategy: str
    seed: int
    data: DataConfig
    train: TrainConfig
    method: dict
    profile: str | None
    augment: AugmentConfig

    def as_dict(self) -> dict:
        """The resolved recipe, as the artifact manifest records it (and its input hash covers).

        `augment` appears only when a method is set, so plain recipes keep the hashes (and the
        cached artifacts) they had before augmentation existed.
        """
        resolved = {"strategy": self.strategy, "seed": self.seed, "profile": self.profile,
                    "data": {f.name: getattr(self.data, f.name) for f in fields(self.data)},
                    "train": {f.name: getattr(self.train, f.name) for f in fields(self.train) if f.name != "seed"},
                    "method": self.method}
        if self.augment.active:
            resolved["augment"] = self.augment.as_dict()
        return resolved


def load_recipe(strategy: str, *, config: Path | None = None, profile: str | None = None,
                overrides: dict | None = None, overrides_from: str = "overrides") -> Recipe:
    """The strategy's defaults and their profile, then `config` and its own profile, then `overrides`.

    A user's file wins over the builtin profile: a run spec's `recipes: {lora: my-lora.yaml}` that
    sets a learning rate trains with it under the quick profile too. `overrides_from` names where
    the overrides were written (a run spec's variant), for the error messages.
    """
    if strategy not in STRATEGIES:
        raise DomainbenchError(f"strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    defaults_file = RECIPES_DIR / f"{strategy}.yaml"
    defaults = yaml.safe_load(defaults_file.read_text())
    profiles = defaults.pop("profiles")
    if profile is not None and profile not in profiles:
        raise DomainbenchError(f"--profile {profile!r}: expected one of {', '.join(profiles)}")
    resolved = copy.deepcopy(defaults)
    if profile is not None:
        _merge(resolved, profiles[profile], defaults, where=f"{defaults_file} profiles.{profile}")
    if config is not None:
        user = _read_yaml(Path(config))
        user_profiles = user.pop("profiles", None) or {}
        if user.get("strategy", strategy) != strategy:
            raise DomainbenchError(f"{config}: strategy: {user['strategy']!r} but this is `tune {strategy}`")
        _merge(resolved, user, defaults, where=str(config))
        if profile is not None and isinstance(user_profiles, dict) and profile in user_profiles:
            _merge(resolved, user_profiles[profile], defaults, where=f"{config} profiles.{profile}")
    where = str(config or defaults_file)
    if overrides:
        _merge(resolved, overrides, defaults, where=overrides_from)
        where = f"{where} with {overrides_from}"
    return _build(resolved, profile, where=where)


def _read_yaml(path: Path) -> dict:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DomainbenchError(f"recipe {path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DomainbenchError(f"recipe {path}: not UTF-8 text (byte {exc.object[exc.start]:#x} at offset "
                               f"{exc.start}); save it as UTF-8") from exc
    except yaml.YAMLError as exc:
        raise DomainbenchError(f"recipe {path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise DomainbenchError(f"recipe {path}: expected a mapping of recipe fields")
    return document


def _merge(target: dict, update: dict, defaults: dict, *, where: str, prefix: str = "") -> None:
    """Overlay `update` on `target`; every key must exist in the defaults with a compatible type."""
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in defaults:
            raise DomainbenchError(f"{where}: {name}: unknown field; expected one of {', '.join(defaults)}")
        default = defaults[key]
        if name in _OPEN_FIELDS:
            target[key] = copy.deepcopy(value)
        elif isinstance(default, dict) and name != "data.mixture":
            if not isinstance(value, dict):
                raise DomainbenchError(f"{where}: {name}: expected a mapping")
            _merge(target[key], value, default, where=where, prefix=f"{name}.")
        else:
            target[key] = _checked(value, default, where=where, name=name)


def _checked(value, default, *, where: str, name: str):
    expected = type(default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise DomainbenchError(f"{where}: {name}: expected {expected.__name__}, got {value!r}")
    return copy.deepcopy(value)


def _build(resolved: dict, profile: str | None, *, where: str) -> Recipe:
    data, train = resolved["data"], resolved["train"]
    _check_mixture(data["mixture"], where)
    for section, values in (("data", data), ("train", train)):
        for key in ("seq_len", "max_steps", "batch_size", "grad_accum", "eval_every", "checkpoint_every",
                    "keep_checkpoints", "loss_chunk_size"):
            if key in values and values[key] < 1:
                raise DomainbenchError(f"{where}: {section}.{key}: expected a positive number, got {values[key]}")
    if data["seq_len"] < 8:
        raise DomainbenchError(f"{where}: data.seq_len: {data['seq_len']} is too short to train on (at least 8)")
    if train["schedule"] not in SCHEDULES:
        raise DomainbenchError(f"{where}: train.schedule: {train['schedule']!r}; expected one of {', '.join(SCHEDULES)}")
    if train["mixed_precision"] not in PRECISIONS:
        raise DomainbenchError(f"{where}: train.mixed_precision: {train['mixed_precision']!r}; "
                               f"expected one of {', '.join(PRECISIONS)}")
    if train["learning_rate"] <= 0:
        raise DomainbenchError(f"{where}: train.learning_rate: expected a positive number")
    if not all(isinstance(task, str) for task in data["tasks"]):
        raise DomainbenchError(f"{where}: data.tasks: expected a list of task names")
    return Recipe(strategy=resolved["strategy"], seed=resolved["seed"], data=DataConfig(**data),
                  train=TrainConfig(**train, seed=resolved["seed"]), method=resolved["method"], profile=profile,
                  augment=augment_config(resolved["augment"], data["mixture"], where=where))


def _check_mixture(mixture: dict, where: str) -> None:
    if not isinstance(mixture, dict) or not mixture:
        raise DomainbenchError(f"{where}: data.mixture: expected a mapping like {{cpt: 0.5, sft: 0.5}}")
    for name, share in mixture.items():
        if name not in MIXTURE_SOURCES:
            raise DomainbenchError(f"{where}: data.mixture.{name}: unknown source; expected {', '.join(MIXTURE_SOURCES)}")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or share < 0:
            raise DomainbenchError(f"{where}: data.mixture.{name}: expected a share >= 0, got {share!r}")
    if sum(mixture.values()) <= 0:
        raise DomainbenchError(f"{where}: data.mixture: the shares sum to 0")
