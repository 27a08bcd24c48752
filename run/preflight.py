"""Preflight: everything a run can check before its first training step.

A run trains for minutes to hours before it evaluates anything, so a wrong dtype, a device this
machine lacks, a broken recipe, a bad index setting or a suite that lacks what a strategy reads
must fail up front — every problem on its own line naming the field or file, before the run dir
exists. Each check reuses the validation of the room that owns the setting (tuning/recipe.py for
recipes, retrieval/ for index kinds and encoders, harness/models.py for dtypes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from harness.atomic import check_writable
from harness.errors import DomainbenchError
from harness.models import default_device, parse_dtype, resolve_model
from run.spec import WEIGHTS, Configuration, RunSpec
from tuning.forms import FormUse, registered_forms


def check_run(spec: RunSpec, suite, configurations: list[Configuration], profile: str) -> None:
    """Raise one DomainbenchError listing every problem that would stop `spec` after it started."""
    corpus = _corpus_reader(suite.corpus)
    problems = [*_run_dir_problems(spec, suite),
                *_failure(resolve_model, spec.model),
                *_failure(check_device, spec.device),
                *_failure(parse_dtype, spec.dtype, spec.device or default_device()),
                *_tuning_problems(spec, suite, configurations, profile, corpus),
                *_variant_problems(spec, suite, configurations, profile),
                *_rag_problems(spec, suite, configurations, corpus),
                *_form_problems(spec, configurations, profile)]
    if problems:
        # dict.fromkeys: an unreadable corpus is reported once, not once per strategy reading it.
        raise DomainbenchError("\n".join(dict.fromkeys(problems)))


def check_device(device: str | None) -> None:
    """Refuse a device torch cannot use on this machine (None: the default device, always there)."""
    if device is None:
        return
    available = available_devices()
    if device not in available:
        raise DomainbenchError(f"--device {device!r}: not a device of this machine (available: {', '.join(available)})")


def available_devices() -> list[str]:
    """cpu, plus cuda and cuda:N where CUDA is present, plus mps where Apple's backend is."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda", *(f"cuda:{index}" for index in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


# ----- the run directory ----------------------------------------------------------------------------

def _run_dir_problems(spec: RunSpec, suite) -> list[str]:
    """A run dir that cannot be written, or one that holds a run of another suite (its report would mix them)."""
    run_dir = spec.run_dir
    problems = _failure(lambda: check_writable(run_dir, label=f"run dir {run_dir}"))
    if problems:
        return problems
    made_with = _suite_of_run(run_dir)
    if made_with is not None and made_with != suite.name:
        problems.append(f"run dir {run_dir}: holds a run of suite {made_with!r}, not {suite.name!r}; "
                        "choose another --name (or --output), or delete that run dir")
    return problems


def _suite_of_run(run_dir: Path) -> str | None:
    """The suite a run dir holds results of: its run.yaml says, or else (results written by `eval`) a result file."""
    import yaml

    from reports.schema import RESULTS_DIR, load_result

    try:
        recorded = yaml.safe_load((run_dir / "run.yaml").read_text(encoding="utf-8"))
        return recorded["suite"]["name"]
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        pass
    for path in sorted((run_dir / RESULTS_DIR).glob("*/*.json")):
        try:
            return load_result(path).suite.get("name")
        except DomainbenchError:
            continue
    return None


# ----- tuning: recipes and the training data they read ---------------------------------------------

def _tuning_problems(spec: RunSpec, suite, configurations: list[Configuration], profile: str, corpus) -> list[str]:
    users = _strategy_users(configurations)
    strategies = list(dict.fromkeys([*users, *spec.recipes]))
    recipes, problems = {}, []
    for strategy in strategies:
        try:
            recipes[strategy] = spec.recipe(strategy, profile)
        except DomainbenchError as exc:
            problems.append(str(exc))
    if "distill" in users and _teacher_is_finetuned(recipes.get("distill")):
        # The teacher is the run's `finetuned` weights: the full strategy trains (and reads data) for it too.
        users.setdefault("full", []).extend(users["distill"])
        if "full" not in strategies:
            recipes["full"] = spec.recipe("full", profile)  # the defaults: no user file to fail
    for strategy, names in users.items():
        if strategy in recipes:
            problems += _training_data_problems(spec, suite, strategy, recipes[strategy], names, corpus)
    return problems


def _strategy_users(configurations: list[Configuration]) -> dict[str, list[str]]:
    """Each tuning strategy the configurations need, with the names of the configurations needing it."""
    users: dict[str, list[str]] = {}
    for configuration in configurations:
        for strategy in (WEIGHTS[configuration.weights], configuration.adapter):
            if strategy is not None:
                users.setdefault(strategy, []).append(configuration.name)
    return users


def _variant_problems(spec: RunSpec, suite, configurations: list[Configuration], profile: str) -> list[str]:
    """Each variant's recipe under this profile, the corpus its augmentation reads, and its generator's model."""
    from tuning.augment.settings import SYNTHETIC_QA

    problems = []
    trained = dict.fromkeys((pair, c.name) for c in configurations if c.variant for pair in spec.trained(c)
                            if pair[1] is not None)
    for (strategy, variant), name in trained:
        try:
            recipe = spec.recipe(strategy, profile, variant)
        except DomainbenchError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if recipe.augment.reads_corpus and suite.corpus is None:
            problems.append(f"{name}: {recipe.augment.method} reads the suite's corpus, but {_suite_yaml(suite)} "
                            "names none")
        if recipe.augment.method == SYNTHETIC_QA:
            problems += [f"{name}: the synthetic-qa generator {spec.generator(variant)!r} cannot be opened: {why}"
                         for why in _failure(check_generator, spec.generator(variant))]
    return problems


def check_generator(model: str) -> None:
    """Refuse a generator model spec that names nothing here: an unknown model or dir, a missing GGUF file.

    An endpoint is not called before the run: whether its server is up is known only when it is asked.
    """
    from engines.registry import is_endpoint, is_gguf_file

    if is_endpoint(model):
        return
    if is_gguf_file(model):
        if not Path(model).expanduser().is_file():
            raise DomainbenchError(f"{model}: no such GGUF file")
        return
    resolve_model(model)


def _training_data_problems(spec: RunSpec, suite, strategy: str, recipe, names: list[str], corpus) -> list[str]:
    """What tuning will read for this recipe, checked by tuning/data.py against the suite."""
    from tuning.data import data_problems

    return data_problems(recipe.data, suite, who=f"{', '.join(names)}: tuning {strategy}",
                         recipe_file=spec.recipes.get(strategy) or f"the default {strategy} recipe",
                         corpus_splits=corpus)


# ----- retrieval ---------------------------------------------------------------------------------

def _rag_problems(spec: RunSpec, suite, configurations: list[Configuration], corpus) -> list[str]:
    from retrieval.rag import rag_settings_problems
    from tasks.rag_policy import check_rag_ready

    names = [c.name for c in configurations if c.rag]
    if not names:
        return []
    problems = rag_settings_problems(retrieval=spec.rag.retrieval, kind=spec.rag.kind, encoder=spec.rag.encoder)
    if suite.corpus is None:
        problems.append(f"{', '.join(names)}: retrieval needs a knowledge base, but {_suite_yaml(suite)} names no corpus")
    else:
        problems += corpus()[1]
    # A task whose rag mode cannot be honoured (exclude-source without source documents) is refused now.
    for task in suite.select(spec.tasks):
        problems += _failure(check_rag_ready, task, task.examples.get("test", []))
    return problems


# ----- deployable forms ---------------------------------------------------------------------------

def _form_problems(spec: RunSpec, configurations: list[Configuration], profile: str) -> list[str]:
    """A form this machine cannot make or run, or whose recipe is broken, refused before anything trains."""
    device = spec.device or default_device()
    problems = []
    for form in registered_forms():
        use = FormUse(tuple(c for c in configurations if form.name in c.forms), spec.model)
        if not use.configurations:
            continue
        problems += _failure(spec.form_recipe, form, profile)
        if form.gpu_only and not device.startswith("cuda"):
            # Its libraries are beside the point on a machine that cannot run it at all.
            problems.append(f"{use.names}: {form.name} needs a CUDA GPU ({form.gpu_only}); "
                            f"this run's device is {device}")
        else:
            problems += form.requirements(use)
    return problems


# ----- helpers -----------------------------------------------------------------------------------

def _corpus_reader(path: Path | None) -> Callable[[], tuple[set, list[str]]]:
    """A call returning the corpus's record splits and its problems, read on the first call only."""
    from retrieval.corpus import JSONL_SUFFIXES
    from tasks.datafiles import read_rows

    @functools.cache
    def read() -> tuple[set, list[str]]:
        if not path.name.endswith(JSONL_SUFFIXES):
            return set(), [f"{path}: corpus: expected a {' or '.join(JSONL_SUFFIXES)} file"]
        rows, problems = read_rows(path, max_chars=None)  # documents are chunked: a long one is fine
        return {row.fields.get("split") for row in rows}, [str(problem) for problem in problems]
    return read


def _teacher_is_finetuned(recipe) -> bool:
    return recipe is not None and recipe.method.get("teacher") == "finetuned"


def _suite_yaml(suite) -> str:
    return str(Path(suite.path) / "suite.yaml")


def _failure(check: Callable, *args) -> list[str]:
    """[] when `check(*args)` passes, else its one-line user error."""
    try:
        check(*args)
    except DomainbenchError as exc:
        return [str(exc)]
    return []
