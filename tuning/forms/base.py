"""What a deployable form is, and the registry of forms by name.

A form is one file (tuning/forms/<name>.py) holding a `Form` and its `register_form` call: how it
is made from its parent, what enters its cache key, where it sits in a configuration's chain,
what it needs and refuses to stack with, what a machine needs to make and run it, and which
engine runs it. The run (parsing, preflight, artifacts, result keys) and `serve` read these
declarations; none of them lists the forms.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DomainbenchError

ENGINE_KINDS = ("hf", "llama.cpp")


@dataclass(frozen=True)
class FormSource:
    """What a form is made from: the parent model dir, its fingerprint, and where it came from.

    `gguf` is the GGUF file the parent was converted from, when it was (the builtin model):
    the `gguf` form of such a parent is that very file, not a re-export.
    """

    path: Path
    fingerprint: str
    adapter: Path | None = None
    adapter_fingerprint: str | None = None
    gguf: Path | None = None


@dataclass(frozen=True)
class FormBuild:
    """One form to build: its source, the run's form settings (`forms:`), the form's recipe and the suite."""

    source: FormSource
    settings: dict
    recipe: dict | None = None
    suite: object | None = None


@dataclass(frozen=True)
class FormUse:
    """How a run uses one form, for its preflight check: the configurations naming it and the run's model spec.

    `configurations` are `run.spec.Configuration`s (each has `name` and `model_key`).
    """

    configurations: tuple
    model: str

    @property
    def names(self) -> str:
        """The configurations that use the form, as a problem line starts with them."""
        return ", ".join(configuration.name for configuration in self.configurations)


@dataclass(frozen=True)
class FormSetting:
    """One `forms:` setting of a run spec: its value when the spec says nothing, and the values allowed."""

    default: str
    allowed: tuple[str, ...]


@dataclass(frozen=True)
class Form:
    """A deployable form of a model, as every room that handles forms reads it.

    name: the configuration part (`adapter+merged+int8`).
    order: its place in a chain; a configuration names its forms in ascending order.
    make: writes the form of `build.source` into the directory and returns details for its manifest.
    settings: the `forms:` settings it reads (`FormSetting`: default, allowed values); they enter its cache key.
    inputs: what else it is made from (a recipe, the suite), entered in its cache key.
    merges: the adapter strategy it folds into the weights (`lora` for merged); a chain with an
        adapter starts with such a form, and only such a form takes one.
    excludes: forms it cannot share a chain with, and `excludes_why`, the line saying why.
    recipe: the key of its recipe in a run's `recipes:`, and `load_recipe(path or None, profile)`
        which loads and validates it (at preflight, and for `make`).
    requirements: what this machine lacks to make or run it for a run (one line per problem).
    gpu_only: why only a CUDA GPU runs it, or None (any device).
    vllm_servable: whether the artifact is a plain Hugging Face dir vLLM serves as evaluated.
    engine: which engine runs the artifact: `hf` (a model dir) or `llama.cpp` (a GGUF file).
    libraries: distributions that make or run it; their versions enter its cache key and the input key of
        every result computed with it (a torchao upgrade builds the int8 form again and re-scores it).
    """

    name: str
    order: int
    make: Callable[[FormBuild, Path], dict]
    settings: dict[str, FormSetting] = field(default_factory=dict)
    inputs: Callable[[FormBuild], dict] = lambda build: {}
    merges: str | None = None
    excludes: tuple[str, ...] = ()
    excludes_why: str = ""
    recipe: str | None = None
    load_recipe: Callable[[Path | None, str], dict] | None = None
    requirements: Callable[[FormUse], list[str]] = lambda use: []
    gpu_only: str | None = None
    vllm_servable: bool = False
    engine: str = "hf"
    libraries: tuple[str, ...] = ()


_FORMS: dict[str, Form] = {}


def register_form(form: Form) -> Form:
    """Add `form` to the registry; its name and its place in the chain must be free."""
    taken = next((other.name for other in _FORMS.values() if other.order == form.order), None)
    if form.name in _FORMS or taken is not None:
        raise ValueError(f"form {form.name!r}: its name or its order {form.order} is taken by {taken or form.name!r}")
    _FORMS[form.name] = form
    return form


def unregister_form(name: str) -> None:
    """Remove a registered form (a test's toy form, when the test ends)."""
    del _FORMS[name]


def get_form(name: str) -> Form:
    """The registered form called `name` (configuration parsing has refused unknown names)."""
    return _FORMS[name]


def registered_forms() -> list[Form]:
    """Every registered form, in chain order."""
    return sorted(_FORMS.values(), key=lambda form: form.order)


def form_setting_defaults() -> dict[str, str]:
    """Every registered form's `forms:` settings with their defaults: a run spec's `forms` when it names none."""
    return {name: setting.default for form in registered_forms() for name, setting in form.settings.items()}


def checked_form_settings(value, source: str) -> dict[str, str]:
    """A run spec's `forms:` block (None: absent) with every registered form's defaults filled in;
    a key no form reads, or a value its form does not allow, is refused naming `source` and the field."""
    settings = form_setting_defaults()
    if value is None:
        return settings
    if not isinstance(value, dict):
        raise DomainbenchError(f"{source}: forms: expected a mapping of {', '.join(settings)}")
    for key, chosen in value.items():
        if key not in settings:
            raise DomainbenchError(f"{source}: forms.{key}: unknown run spec field "
                                   f"(known: {', '.join('forms.' + name for name in sorted(settings))})")
        if not isinstance(chosen, str):
            raise DomainbenchError(f"{source}: forms.{key}: expected str, got {chosen!r}")
    settings.update(value)
    for form in registered_forms():
        for name, setting in form.settings.items():
            if settings[name] not in setting.allowed:
                raise DomainbenchError(f"{source}: forms.{name}: {settings[name]!r} is not one of "
                                       f"{', '.join(setting.allowed)}")
    return settings


def form_names() -> tuple[str, ...]:
    """The registered forms' names, in chain order."""
    return tuple(form.name for form in registered_forms())


def chain_engine(forms: tuple[str, ...]) -> str:
    """The engine kind that runs a chain of forms: its last form's (the weights alone run in `hf`)."""
    return get_form(forms[-1]).engine if forms else "hf"


def importable(module: str) -> bool:
    """Whether `module` is installed, without importing it (a requirement check must stay cheap)."""
    return importlib.util.find_spec(module) is not None
