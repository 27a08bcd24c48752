"""Run specs: what `domainbench run` compares, as plain data validated once at start-up.

A spec is a YAML file and/or CLI flags (flags win). Every field has a default, so
`domainbench run` alone compares the default configurations of the builtin model on the builtin
suite. Configurations compose: `adapter+rag` is the base weights with the LoRA adapter and
retrieval; see `parse_configuration`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from harness.errors import DomainbenchError

DEFAULT_CONFIGURATIONS = ("base", "rag", "adapter", "finetuned", "distilled", "adapter+rag")
GPU_EXTRA_CONFIGURATIONS = ("prefix",)

# Which weights a configuration starts from, and which tuning strategy produces them.
WEIGHTS = {"base": None, "finetuned": "full", "distilled": "distill"}
# Adapter names accepted in a configuration, and the PEFT strategy each one trains.
ADAPTERS = {"adapter": "lora", "lora": "lora", "prefix": "prefix"}
PROFILES = ("auto", "quick", "full")

# Per-task example limits by profile: `quick` fits a 2-core CPU, `full` is every test example.
PROFILE_LIMITS = {"quick": 16, "full": None}
# Tokens of retrieved passages a RAG prompt may carry: on a CPU every token of context costs
# evaluation time in every task, so the quick profile keeps about two chunks.
PROFILE_RAG_CONTEXT_TOKENS = {"quick": 448, "full": 1024}


@dataclass(frozen=True)
class Configuration:
    """One way to run the model: which weights, which adapter, with or without retrieval."""

    name: str
    weights: str = "base"
    adapter: str | None = None
    rag: bool = False


def parse_configuration(name: str) -> Configuration:
    """`base`, `rag`, `adapter`, `prefix`, `finetuned`, `distilled`, or parts joined by `+`."""
    weights, adapter, rag = None, None, False
    for part in name.strip().split("+"):
        if part in WEIGHTS:
            if weights is not None:
                raise DomainbenchError(f"configuration {name!r}: names two sets of weights ({weights}, {part})")
            weights = part
        elif part in ADAPTERS:
            if adapter is not None:
                raise DomainbenchError(f"configuration {name!r}: names two adapters")
            adapter = ADAPTERS[part]
        elif part == "rag":
            if rag:
                raise DomainbenchError(f"configuration {name!r}: names rag twice")
            rag = True
        else:
            known = ", ".join([*WEIGHTS, *ADAPTERS, "rag"])
            raise DomainbenchError(f"configuration {name!r}: unknown part {part!r} (known: {known}, joined by +)")
    if adapter and weights not in (None, "base"):
        # Adapters are trained on the base weights; on other weights they would be out of place.
        raise DomainbenchError(f"configuration {name!r}: adapters apply to the base weights only, not {weights}")
    return Configuration(name=name, weights=weights or "base", adapter=adapter, rag=rag)


@dataclass
class RagSettings:
    encoder: str = "minilm-l6"
    k: int = 4
    kind: str = "flat"


@dataclass
class RunSpec:
    name: str = "demo"
    suite: str = "manpages"
    model: str = "smollm2-135m-instruct"
    configurations: list[str] | None = None      # None: the profile's defaults
    profile: str = "auto"
    tasks: list[str] | None = None
    limit: int | None = None
    num_fewshot: int | None = None
    seed: int = 1234
    device: str | None = None
    dtype: str | None = None
    output: str = "runs"
    trust_remote_code: bool = False
    rag: RagSettings = field(default_factory=RagSettings)
    # Optional recipe YAML per strategy (full, lora, prefix, distill); defaults otherwise.
    recipes: dict[str, str] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(self.output) / self.name

    def configuration_names(self, profile: str) -> list[str]:
        """The configurations asked for, or the defaults (the GPU profile adds `prefix`)."""
        if self.configurations is not None:
            return list(self.configurations)
        extra = GPU_EXTRA_CONFIGURATIONS if profile == "full" else ()
        return [*DEFAULT_CONFIGURATIONS, *extra]

    def parsed_configurations(self, profile: str) -> list[Configuration]:
        return [parse_configuration(name) for name in self.configuration_names(profile)]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_spec(path: str | Path | None, overrides: dict[str, Any]) -> RunSpec:
    """The spec from `path` (if any) with non-None `overrides` applied, validated."""
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_spec_file(Path(path))
    values.update({key: value for key, value in overrides.items() if value is not None})
    source = str(path) if path else "command line"
    rag = values.pop("rag", None) or {}
    _check_fields(values, RunSpec, source)
    if isinstance(rag, dict):
        _check_fields(rag, RagSettings, source, prefix="rag.")
        rag = RagSettings(**rag)
    elif not isinstance(rag, RagSettings):
        raise DomainbenchError(f"{source}: rag: expected a mapping of {', '.join(_field_types(RagSettings))}")
    spec = RunSpec(**values, rag=rag)
    _validate(spec, source)
    return spec


def resolve_profile(spec: RunSpec, device: str) -> str:
    """`auto` means `full` on a GPU and `quick` on a CPU."""
    if spec.profile != "auto":
        return spec.profile
    return "full" if device.startswith("cuda") else "quick"


def _read_spec_file(path: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise DomainbenchError(f"{path}: no such run spec file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise DomainbenchError(f"{path}:{line}: yaml: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(values, dict):
        raise DomainbenchError(f"{path}:1: spec: expected a mapping of fields")
    return values


def _check_fields(values: dict[str, Any], cls: type, source: str, prefix: str = "") -> None:
    """Every key a field of `cls` and every value of its field's type, or the first one that is not."""
    types = _field_types(cls)
    for key, value in values.items():
        if key not in types:
            raise DomainbenchError(f"{source}: {prefix}{key}: unknown run spec field "
                                   f"(known: {', '.join(prefix + name for name in sorted(types))})")
        if not _has_type(value, types[key]):
            raise DomainbenchError(f"{source}: {prefix}{key}: expected {_type_name(types[key])}, got {value!r}")


def _field_types(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _has_type(value: Any, hint: Any) -> bool:
    """isinstance for the annotations of RunSpec: unions, list[...], dict[..., ...], plain classes."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        return any(_has_type(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(_has_type(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(_has_type(k, args[0]) and _has_type(v, args[1])
                                               for k, v in value.items())
    if hint is int:  # YAML's `true` is a bool, which Python counts as an int
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("NoneType", "None")


def _validate(spec: RunSpec, source: str) -> None:
    if spec.configurations is not None and not spec.configurations:
        raise DomainbenchError(f"{source}: configurations: at least one is needed")
    names = [c.name for c in spec.parsed_configurations("full")]  # raises on an unknown configuration
    if len(set(names)) != len(names):
        raise DomainbenchError(f"{source}: configurations: listed twice: {sorted({n for n in names if names.count(n) > 1})}")
    if spec.profile not in PROFILES:
        raise DomainbenchError(f"{source}: profile: {spec.profile!r} is not one of {', '.join(PROFILES)}")
    if spec.limit is not None and spec.limit < 1:
        raise DomainbenchError(f"{source}: limit: expected a positive number, got {spec.limit}")
    if spec.rag.k < 1:
        raise DomainbenchError(f"{source}: rag.k: expected a positive number, got {spec.rag.k}")
    unknown = sorted(set(spec.recipes) - {"full", "lora", "prefix", "distill"})
    if unknown:
        raise DomainbenchError(f"{source}: recipes: {unknown[0]}: not a tuning strategy (full, lora, prefix, distill)")
    if "/" in spec.name or not spec.name:
        raise DomainbenchError(f"{source}: name: {spec.name!r} must be a plain directory name")
