"""Run specs: what `domainbench run` compares, as plain data validated once at start-up.

A spec is a YAML file and/or CLI flags (flags win). Every field has a default, so
`domainbench run` alone compares the default configurations of the builtin model on the builtin
suite. Configurations compose: `adapter+rag` is the base weights with the LoRA adapter and
retrieval; see `parse_configuration`. A tuned part may name a variant of its strategy — the same
strategy trained on augmented data — after `@`: `adapter@rc`, `finetuned@synthetic-qa+rag`,
`adapter@rc+merged`; see run/variants.py and a spec's `variants:` block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from harness.errors import DomainbenchError
from run.variants import VARIANT_NAME, VARIANTS, validate_variants
from tasks.datafiles import read_yaml
from tuning.forms import checked_form_settings, form_names, form_setting_defaults, get_form, registered_forms

DEFAULT_CONFIGURATIONS = ("base", "rag", "adapter", "finetuned")
# The full profile compares these too; on the quick profile they are asked for by name. That
# profile's run (48 examples per task on a 2-core CPU) is meant to fit in 15 minutes, and these
# would not pay their way there: 20 distillation steps of 4 x 128 tokens leave SmolLM2-135M's
# 15-layer student at 3.5x its teacher's dev perplexity (flagged, never ranked, a seventh of the
# run); adapter+rag adds ~130 s for a combination of two strategies the run already measures
# apart; prefix tuning needs a GPU's budget (2-core AVX-512 BF16 CPU, 2026-12-01 and 02).
FULL_PROFILE_CONFIGURATIONS = ("adapter+rag", "distilled", "prefix")

# Which weights a configuration starts from, and which tuning strategy produces them.
WEIGHTS = {"base": None, "finetuned": "full", "distilled": "distill"}
# Adapter names accepted in a configuration, and the PEFT strategy each one trains.
ADAPTERS = {"adapter": "lora", "lora": "lora", "prefix": "prefix"}
# How problem lines name each adapter strategy.
ADAPTER_TITLES = {"lora": "LoRA", "prefix": "prefix"}
# Deployable forms of a model (merged, pruned, int8, nf4, gguf) are tuning.forms' registry: each
# declares its place in a chain and what it composes with. Each is reported beside its parent:
# the configuration without its last form.
PROFILES = ("auto", "quick", "full")

# Per-task example limits by profile: `quick` fits a 2-core CPU, `full` is every test example.
PROFILE_LIMITS = {"quick": 48, "full": None}
# Tokens of retrieved passages a RAG prompt may carry: on a CPU every token of context costs
# evaluation time in every task, so the quick profile keeps about two chunks.
PROFILE_RAG_CONTEXT_TOKENS = {"quick": 448, "full": 1024}


@dataclass(frozen=True)
class Configuration:
    """One way to run the model: which weights, which adapter, which deployable forms, with or without retrieval."""

    name: str
    weights: str = "base"
    adapter: str | None = None
    rag: bool = False
    forms: tuple[str, ...] = ()
    variant: str | None = None       # the variant of the tuned part (weights or adapter): `rc` of `adapter@rc`

    @property
    def model_key(self) -> str:
        """What the model is, without retrieval: `finetuned`, `adapter@rc`, `adapter+merged+int8`.

        Configurations with one model key run the very same model (with or without retrieval).
        """
        adapter = {"lora": "adapter"}.get(self.adapter, self.adapter)
        weights = self.weights if self.weights != "base" or not adapter else None
        parts = [_with_variant(weights, self.variant if not adapter else None),
                 _with_variant(adapter, self.variant)]
        return "+".join([part for part in parts if part] + list(self.forms)) or "base"

    @property
    def weights_key(self) -> str:
        """The weights' artifact: `base`, `finetuned`, `finetuned@rc` (a variant on an adapter leaves them plain)."""
        return _with_variant(self.weights, None if self.adapter else self.variant)

    @property
    def adapter_key(self) -> str | None:
        """The adapter's artifact: its strategy, with the variant (`lora@rc`); None without an adapter."""
        return _with_variant(self.adapter, self.variant) if self.adapter else None

    @property
    def plain(self) -> str | None:
        """The configuration this one is a variant of (`adapter+merged` for `adapter@rc+merged`), or None."""
        if self.variant is None:
            return None
        return "+".join(part.split("@")[0] for part in self.name.split("+"))

    @property
    def parent(self) -> str | None:
        """The configuration this one is a form of (its name without the last form), or None."""
        if not self.forms:
            return None
        parts = self.name.split("+")
        del parts[len(parts) - 1 - parts[::-1].index(self.forms[-1])]
        return "+".join(parts) or "base"

    @property
    def merged(self) -> bool:
        """Whether the adapter lives inside the weights (merged) rather than beside them."""
        return any(get_form(form).merges for form in self.forms)


def _with_variant(part: str | None, variant: str | None) -> str | None:
    return f"{part}@{variant}" if part and variant else part


def parse_configuration(name: str) -> Configuration:
    """`base`, `rag`, `adapter`, `prefix`, `finetuned`, `distilled`, forms, or parts joined by `+`.

    A tuned part (tuned weights or an adapter) may carry a variant: `adapter@rc`. Which variants
    exist is the spec's business (RunSpec checks them); here only the syntax is.
    """
    weights, adapter, rag, forms, variant = None, None, False, [], None
    for part in name.strip().split("+"):
        part, at, named = part.partition("@")
        if at:
            variant = _variant_of(name, part, named, variant)
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
        elif part in form_names():
            if part in forms:
                raise DomainbenchError(f"configuration {name!r}: names {part} twice")
            forms.append(part)
        else:
            known = ", ".join([*WEIGHTS, *ADAPTERS, *form_names(), "rag"])
            raise DomainbenchError(f"configuration {name!r}: unknown part {part!r} (known: {known}, joined by +)")
    if adapter and weights not in (None, "base"):
        # Adapters are trained on the base weights; on other weights they would be out of place.
        raise DomainbenchError(f"configuration {name!r}: adapters apply to the base weights only, not {weights}")
    _check_forms(name, adapter, forms)
    if variant is not None and adapter is None and weights in (None, "base"):
        raise DomainbenchError(f"configuration {name!r}: a variant names how a strategy trains; base has none")
    return Configuration(name=name, weights=weights or "base", adapter=adapter, rag=rag, forms=tuple(forms),
                         variant=variant)


def _variant_of(name: str, part: str, variant: str, earlier: str | None) -> str:
    """The variant `part@variant` names, refused on a part that is not trained or when a second one is named."""
    if part not in ADAPTERS and WEIGHTS.get(part) is None:
        raise DomainbenchError(f"configuration {name!r}: {part}@{variant}: a variant goes on a trained part "
                               f"({', '.join([*(w for w, s in WEIGHTS.items() if s), *ADAPTERS])}), e.g. adapter@rc")
    if earlier is not None:
        raise DomainbenchError(f"configuration {name!r}: names two variants ({earlier}, {variant})")
    if not VARIANT_NAME.match(variant):
        raise DomainbenchError(f"configuration {name!r}: variant {variant!r}: expected lower-case letters, digits, "
                               "'-' and '_' (e.g. adapter@rc)")
    return variant


def _check_forms(name: str, adapter: str | None, forms: list[str]) -> None:
    """Forms apply to one set of weights, in chain order: merge first, then prune, quantize, export."""
    for form in map(get_form, forms):
        if form.merges and adapter is None:
            raise DomainbenchError(f"configuration {name!r}: {form.name} needs an adapter to merge "
                                   f"(e.g. adapter+{form.name})")
        if form.merges and adapter != form.merges:
            raise DomainbenchError(f"configuration {name!r}: a {adapter} adapter has no weights to merge; "
                                   f"only {ADAPTER_TITLES[form.merges]} adapters merge")
    if adapter and forms and not get_form(forms[0]).merges:
        merging = next(form.name for form in registered_forms() if form.merges)
        raise DomainbenchError(f"configuration {name!r}: {forms[0]} applies to weights; merge the adapter first "
                               f"(adapter+{merging}+{forms[0]})")
    for form in map(get_form, forms):
        if set(form.excludes) & set(forms):
            raise DomainbenchError(f"configuration {name!r}: {form.excludes_why}")
    order = sorted(forms, key=lambda form: get_form(form).order)
    if forms != order:
        raise DomainbenchError(f"configuration {name!r}: forms apply in the order {' -> '.join(form_names())}; "
                               f"write {'+'.join(order)}")


def _parents(name: str) -> list[str]:
    """The chain of parents of a configuration, farthest first (`adapter`, `adapter+merged` for `adapter+merged+int8`)."""
    parent = parse_configuration(name).parent
    return [*_parents(parent), parent] if parent else []


@dataclass
class RagSettings:
    encoder: str = "minilm-l6"
    k: int = 4
    kind: str = "flat"            # the FAISS index kind of the dense side
    retrieval: str = "hybrid"     # hybrid (BM25 + dense, normalised score mix) | dense | lexical


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
    # How the deployable forms are made: each form declares its settings and their defaults
    # (tuning/forms/); pruning has its own recipe (recipes.prune).
    forms: dict[str, str] = field(default_factory=form_setting_defaults)
    # Optional recipe YAML per strategy (full, lora, prefix, distill, prune); defaults otherwise.
    recipes: dict[str, str] = field(default_factory=dict)
    # Variants of strategies beside VARIANTS: name -> {augment: {...recipe augment fields}, generator: spec}.
    variants: dict[str, dict] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(self.output) / self.name

    def configuration_names(self, profile: str) -> list[str]:
        """The configurations asked for, or the defaults (the full profile adds FULL_PROFILE_CONFIGURATIONS).

        A form is always evaluated beside its parent: a parent not asked for is added before it.
        """
        if self.configurations is None:
            extra = FULL_PROFILE_CONFIGURATIONS if profile == "full" else ()
            return [*DEFAULT_CONFIGURATIONS, *extra]
        names: list[str] = []
        for name in self.configurations:
            names += [parent for parent in _parents(name) if parent not in names and parent not in self.configurations]
            names.append(name)
        return names

    def parsed_configurations(self, profile: str) -> list[Configuration]:
        return [parse_configuration(name) for name in self.configuration_names(profile)]

    def variant(self, name: str) -> dict:
        """A variant's definition: the spec's own, else the builtin one of that name."""
        if name not in self.variants and name not in VARIANTS:
            known = ", ".join(sorted({*VARIANTS, *self.variants}))
            raise DomainbenchError(f"variant {name!r}: not defined (known: {known}; define others under variants:)")
        return self.variants.get(name) or VARIANTS[name]

    def generator(self, variant: str) -> str:
        """The model spec that writes a synthetic-qa variant's pairs: the variant's, else the run's model."""
        return self.variant(variant).get("generator") or self.model

    def recipe(self, strategy: str, profile: str, variant: str | None = None, *, source: str = "run spec"):
        """The strategy's recipe for this run (recipes.<strategy> or the defaults), with `variant`'s overrides.

        `source` (the spec file) is named with the variant's field in errors.
        """
        from tuning.recipe import load_recipe

        path = self.recipes.get(strategy)
        overrides, where = None, ""
        if variant is not None:
            overrides = {"augment": self.variant(variant).get("augment", {})}
            where = (f"{source}: variants.{variant}" if variant in self.variants
                     else f"the builtin variant {variant}")
        return load_recipe(strategy, config=Path(path) if path else None, profile=profile, overrides=overrides,
                           overrides_from=where)

    def form_recipe(self, form, profile: str) -> dict | None:
        """`form`'s recipe for this run (`recipes.prune` for pruned, or the defaults); None for a form without one."""
        if form.recipe is None:
            return None
        path = self.recipes.get(form.recipe)
        return form.load_recipe(Path(path) if path else None, profile)

    def trained(self, configuration: Configuration) -> list[tuple[str, str | None]]:
        """(strategy, variant) of each artifact `configuration` trains: its weights' and its adapter's."""
        found = []
        if WEIGHTS[configuration.weights] is not None:
            found.append((WEIGHTS[configuration.weights], None if configuration.adapter else configuration.variant))
        if configuration.adapter:
            found.append((configuration.adapter, configuration.variant))
        return found

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_spec(path: str | Path | None, overrides: dict[str, Any]) -> RunSpec:
    """The spec from `path` (if any) with non-None `overrides` applied, validated."""
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_spec_file(Path(path))
    values.update({key: value for key, value in overrides.items() if value is not None})
    source = str(path) if path else "command line"
    rag = _settings(values.pop("rag", None), RagSettings, source, "rag")
    forms = checked_form_settings(values.pop("forms", None), source)
    _check_fields(values, RunSpec, source)
    spec = RunSpec(**values, rag=rag, forms=forms)
    _validate(spec, source)
    return spec


def _settings(value: Any, cls: type, source: str, key: str):
    """A nested settings block (`rag:`, `forms:`) from its mapping, field by field checked."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise DomainbenchError(f"{source}: {key}: expected a mapping of {', '.join(_field_types(cls))}")
    _check_fields(value, cls, source, prefix=f"{key}.")
    return cls(**value)


def resolve_profile(spec: RunSpec, device: str) -> str:
    """`auto` means `full` on a GPU and `quick` on a CPU."""
    if spec.profile != "auto":
        return spec.profile
    return "full" if device.startswith("cuda") else "quick"


def _read_spec_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DomainbenchError(f"{path}: no such run spec file")
    values = read_yaml(path) or {}  # refuses binary files, duplicate keys and alias bombs at their line
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
    if spec.num_fewshot is not None and spec.num_fewshot < 0:
        raise DomainbenchError(f"{source}: num_fewshot: expected 0 or more, got {spec.num_fewshot}")
    if spec.rag.k < 1:
        raise DomainbenchError(f"{source}: rag.k: expected a positive number, got {spec.rag.k}")
    strategies = ["full", "lora", "prefix", "distill", *(form.recipe for form in registered_forms() if form.recipe)]
    unknown = sorted(set(spec.recipes) - set(strategies))
    if unknown:
        raise DomainbenchError(f"{source}: recipes: {unknown[0]}: not a tuning strategy ({', '.join(strategies)})")
    validate_variants(spec, source)
    if not spec.name or spec.name.startswith(".") or any(sep in spec.name for sep in ("/", "\\", "\0")):
        # `..` or `a/b` would put the run's reports outside OUTPUT/, `.` into OUTPUT itself.
        raise DomainbenchError(f"{source}: name: {spec.name!r} must be a plain directory name "
                               "(no '/' or '\\', not starting with '.')")
