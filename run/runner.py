"""The comparison run: train what needs training, build the index, evaluate every configuration.

The path of one run, top to bottom:
    spec -> artifacts (tuning, cached by input hash) -> index (retrieval, cached)
         -> for each weights group: load once, attach each adapter in turn
         -> for each (configuration, task): evaluate unless a result with the same inputs exists
         -> reports
A result is reused only when its `input_key` — the fingerprints of model weights, adapter, index,
task data, every evaluation setting as resolved (code defaults included), and the versions of
domainbench and the libraries that compute the scores — matches, so a result is never served for
another model or another code.
A GGUF runs in llama.cpp in a process of its own: when that crashes, its configurations are recorded
as crashed (reports/crashes.py), the others go on, and a rerun retries only the crashed ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click
import yaml

from engines.isolated import EngineCrashed, IsolatedEngine
from harness.atomic import write_atomic
from harness.errors import DomainbenchError
from harness.models import default_device, parse_dtype
from reports.crashes import clear_crashes, record_crash
from reports.schema import load_result, result_file, result_path, write_result
from run.artifacts import (
    Artifact,
    chain_key,
    prepare_adapters,
    prepare_forms,
    prepare_index,
    prepare_weights,
)
from run.configuration import Prepared, adapter_engine, detach, load_key, open_model, rag_augmenter
from run.preflight import check_run
from run.spec import (
    PROFILE_LIMITS,
    PROFILE_RAG_CONTEXT_TOKENS,
    Configuration,
    RunSpec,
    parse_configuration,
    resolve_profile,
)
from tasks.evaluate import evaluate_task
from tasks.registry import task_module
from tasks.suite import Suite, load_suite
from tuning.memory import peak_memory, reset_peak_memory


def run(spec: RunSpec, *, rebuild_report: bool = True) -> Path:
    """Execute `spec` into `spec.run_dir`; returns the run directory."""
    device = spec.device or default_device()
    profile = resolve_profile(spec, device)
    click.echo(f"run {spec.name}: profile {profile} on {device} (model {spec.model}, suite {spec.suite})", err=True)
    suite = load_suite(spec.suite)
    tasks = suite.select(spec.tasks)
    configurations = spec.parsed_configurations(profile)
    check_run(spec, suite, configurations, profile)
    run_dir = spec.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)

    needs_index = any(c.rag for c in configurations)
    weights = prepare_weights(spec, suite, configurations, profile=profile, run_dir=run_dir)
    adapters = prepare_adapters(spec, suite, configurations, profile=profile, run_dir=run_dir)
    prepared = Prepared(
        weights=weights, adapters=adapters,
        forms=prepare_forms(spec, suite, configurations, weights, adapters, profile=profile, run_dir=run_dir),
        index=prepare_index(spec, suite, profile=profile, run_dir=run_dir) if needs_index else None,
        limit=spec.limit if spec.limit is not None else PROFILE_LIMITS[profile],
        rag_context_tokens=PROFILE_RAG_CONTEXT_TOKENS[profile],
        device=device, dtype=str(parse_dtype(spec.dtype, device)).removeprefix("torch."))
    _write_run_yaml(run_dir, spec, prepared, profile=profile, device=device, suite=suite)

    clear_crashes(run_dir)  # this attempt retries them
    crashed = {}
    for model_key, by_adapter in _grouped(configurations).items():
        pending = {c.name: [t for t in tasks if not _is_fresh(run_dir, c, t, prepared, spec)]
                   for group in by_adapter.values() for c in group}
        if not any(pending.values()):
            click.echo(f"{', '.join(pending)}: all results reused", err=True)
            continue
        try:
            _evaluate_model(model_key, by_adapter, pending, spec, suite, prepared, run_dir=run_dir)
        except EngineCrashed as crash:
            # The engine took only its own configurations down: say which, and go on with the others.
            unfinished = [c.name for group in by_adapter.values() for c in group
                          if not all(_is_fresh(run_dir, c, t, prepared, spec) for t in pending[c.name])]
            for name in unfinished:
                record_crash(run_dir, name, str(crash))
                crashed[name] = str(crash)
            click.echo(f"{', '.join(unfinished)}: {crash}; the other configurations go on", err=True)
    if rebuild_report:
        from reports.run_report import write_report

        write_report(run_dir)
    if crashed:
        raise DomainbenchError(f"run {spec.name}: {'; '.join(f'{n}: {why}' for n, why in crashed.items())} "
                               "(the other configurations finished; run it again to retry only these)")
    return run_dir


def _evaluate_model(model_key: str, by_adapter: dict, pending: dict, spec: RunSpec, suite: Suite,
                    prepared: Prepared, *, run_dir: Path) -> None:
    """Open one model and evaluate its pending configurations, each adapter put on in turn."""
    reset_peak_memory()  # each model's serving peak is its own, not the previous model's
    engine = open_model(model_key, prepared, spec)
    try:
        for adapter, group in by_adapter.items():
            if not any(pending[c.name] for c in group):
                continue
            attached = adapter_engine(engine, prepared.adapters[adapter]) if adapter else engine
            try:
                for configuration in group:
                    _evaluate_configuration(spec, suite, configuration, pending[configuration.name], attached,
                                            prepared, run_dir=run_dir)
            finally:
                if adapter:
                    detach(attached)
    finally:
        engine.close()  # llama.cpp's process, with its model and context


def _evaluate_configuration(spec, suite, configuration, tasks, engine, prepared: Prepared, *, run_dir):
    rag = rag_augmenter(prepared, engine, spec) if configuration.rag else None
    adapter = prepared.adapters[configuration.adapter_key] if configuration.adapter else None
    model_artifact = prepared.forms.get(configuration.model_key) or prepared.weights[configuration.weights_key]
    for task in tasks:
        if configuration.rag and task.rag == "off" and _copy_retrieval_free_result(configuration, task, prepared, spec,
                                                                                 run_dir=run_dir):
            continue
        result = evaluate_task(task, engine, limit=prepared.limit, num_fewshot=spec.num_fewshot, seed=spec.seed,
                               rag=rag, label=f"{configuration.name} / {task.name}")
        result.settings["input_key"] = _input_key(configuration, task, prepared, spec)
        result.cost["training"] = _training_cost(configuration, prepared)
        result.cost["serving"] = _serving_cost(engine, model_artifact, adapter, configuration)
        record = result_file(result, run=spec.name, configuration=configuration.name, suite=suite,
                             model_spec=spec.model, model_fingerprint=model_artifact.fingerprint,
                             adapter=str(adapter.path) if adapter else None)
        record.model["weights"] = configuration.weights
        record.model["adapter_fingerprint"] = adapter.fingerprint if adapter else None
        record.model["forms"] = list(configuration.forms)
        record.model["parent"] = configuration.parent
        record.model["variant"] = configuration.variant
        record.model["variant_of"] = configuration.plain
        record.model["index_fingerprint"] = prepared.index.fingerprint if configuration.rag else None
        write_result(result_path(run_dir, configuration.name, task.name), record)


def _serving_cost(engine, model_artifact: Artifact, adapter: Artifact | None, configuration: Configuration) -> dict:
    """What it takes to serve this configuration's model: bytes on disk, peak resident memory, dtype.

    The peak is the process's resident high-water mark since this model was loaded (the window
    opens before loading), so it counts the weights in memory plus evaluation's working set. An
    isolated engine's is its own process's peak: that process has loaded this one model.
    """
    bytes_on_disk = getattr(engine, "model_bytes", None)
    if adapter is not None and not configuration.merged:
        bytes_on_disk = (bytes_on_disk or 0) + adapter.cost.get("artifact_bytes", 0)
    isolated = isinstance(engine, IsolatedEngine)
    peak, kind = engine.peak_memory() if isolated else peak_memory()
    return {"model_bytes": bytes_on_disk, "peak_memory_bytes": peak, "peak_memory_kind": kind,
            "engine": engine.engine_class if isolated else type(engine).__name__,
            "dtype": getattr(engine, "dtype", None),
            "model_fingerprint": model_artifact.fingerprint}


def _copy_retrieval_free_result(configuration: Configuration, task, prepared: Prepared, spec: RunSpec, *,
                                run_dir: Path) -> bool:
    """Give a `+rag` configuration the result of its retrieval-free twin on a task whose rag mode is off.

    The two would compute exactly the same thing (same weights, adapter, prompts); evaluating it
    again costs minutes on a CPU for no information. False when the twin has no fresh result.
    """
    parts = [part for part in configuration.name.split("+") if part != "rag"]
    twin = parse_configuration("+".join(parts) or "base")
    if not _is_fresh(run_dir, twin, task, prepared, spec):
        return False
    stored = load_result(result_path(run_dir, twin.name, task.name))
    settings = {**stored.settings, "rag": {"mode": "off"}, "input_key": _input_key(configuration, task, prepared, spec),
                "same_as": twin.name}
    copy = replace(stored, configuration=configuration.name, settings=settings,
                   cost={**stored.cost, "training": _training_cost(configuration, prepared)},
                   model={**stored.model, "index_fingerprint": prepared.index.fingerprint})
    write_result(result_path(run_dir, configuration.name, task.name), copy)
    click.echo(f"{configuration.name} / {task.name}: retrieval is off for this task, the result of {twin.name}", err=True)
    return True


def _grouped(configurations: list[Configuration]) -> dict[str, dict[str | None, list[Configuration]]]:
    """model -> adapter -> configurations, adapter-free first: each model loads once, each adapter attaches once.

    A form is its own model (a merged adapter is inside its weights); plain configurations group
    by their weights, with the adapters attached in turn.
    """
    groups: dict[str, dict[str | None, list[Configuration]]] = {}
    for configuration in sorted(configurations, key=lambda c: c.adapter is not None):
        adapter = None if configuration.forms else configuration.adapter
        groups.setdefault(load_key(configuration), {}).setdefault(adapter, []).append(configuration)
    return groups


def _input_key(configuration: Configuration, task, prepared: Prepared, spec: RunSpec) -> str:
    """Hash of everything a result depends on: reuse a result only when this matches."""
    parts = {
        "weights": prepared.weights[configuration.weights_key].fingerprint,
        "adapter": prepared.adapters[configuration.adapter_key].fingerprint if configuration.adapter else None,
        "form": prepared.forms[configuration.model_key].fingerprint if configuration.forms else None,
        "index": prepared.index.fingerprint if configuration.rag else None,
        "rag": ([spec.rag.k, prepared.rag_context_tokens, task.rag, spec.rag.retrieval] if configuration.rag
                else None),
        "task": task.fingerprint,
        # The task as it runs, defaults from the code filled in: a new default template, stop or
        # scoring rule changes results as surely as an edited suite.yaml.
        "task_settings": {name: value for name, value in task.settings().items() if name != "splits"},
        "scoring": task_module(task.type).scoring_settings(task),
        "code": code_versions(configuration),
        "limit": prepared.limit, "num_fewshot": spec.num_fewshot, "seed": spec.seed,
        # What the scores were computed with, not what was asked: an fp32 CPU result is not a bf16 GPU one.
        "device": _device_kind(prepared.device), "dtype": prepared.dtype,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def code_versions(configuration: Configuration) -> dict[str, str | None]:
    """domainbench's version and those of the libraries that compute this configuration's scores."""
    from harness import __version__
    from tuning.forms import get_form

    libraries = ["torch", "transformers"]
    libraries += ["peft"] if configuration.adapter else []
    libraries += [library for form in configuration.forms for library in get_form(form).libraries]
    return {"domainbench": __version__, **{library: _installed_version(library) for library in libraries}}


def _installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _device_kind(device: str) -> str:
    """`cuda:1` and `cuda` compute alike; the kind of device is what a score depends on."""
    return device.split(":")[0]


def _is_fresh(run_dir: Path, configuration: Configuration, task, prepared: Prepared, spec: RunSpec) -> bool:
    path = result_path(run_dir, configuration.name, task.name)
    if not path.is_file():
        return False
    try:
        stored = load_result(path)
    except DomainbenchError:
        return False  # unreadable or from an older schema: evaluate again
    return stored.settings.get("input_key") == _input_key(configuration, task, prepared, spec)


def _training_cost(configuration: Configuration, prepared: Prepared) -> dict:
    """The cost block of every artifact this configuration needed, by artifact name, each with its purpose.

    Itemised, never blended: a distilled model's block sits beside its teacher's, an adapter's
    beside the index's, a variant's beside the making of its augmented data, so a report can add
    what adds up and keep apart what does not (tok/s).
    """
    used = [(prepared.weights[configuration.weights_key], "weights")]
    if configuration.adapter:
        used.append((prepared.adapters[configuration.adapter_key], "adapter"))
    for depth in range(1, len(configuration.forms) + 1):
        used.append((prepared.forms[chain_key(configuration, depth)], "form"))
    if configuration.rag:
        used.append((prepared.index, "index"))
    blocks = {}
    for artifact, purpose in used:
        for dependency in artifact.built_from if purpose != "form" else ():  # a form's parents are listed already
            # A tuned artifact is built from its teacher, or from its augmented data (whose block says so).
            blocks[dependency.name] = {"purpose": "teacher", **dependency.cost}
        if artifact.cost:
            blocks[artifact.name] = {**artifact.cost, "purpose": purpose}
    return blocks


def _write_run_yaml(run_dir: Path, spec: RunSpec, prepared: Prepared, *, profile: str, device: str, suite: Suite):
    from reports.schema import software_versions

    def described(artifacts: dict[str, Artifact]) -> dict:
        return {name: {"path": str(a.path), "fingerprint": a.fingerprint} for name, a in artifacts.items()}

    resolved = {
        "name": spec.name, "configurations": spec.configuration_names(profile), "profile": profile, "device": device,
        "limit_per_task": prepared.limit, "spec": spec.as_dict(),
        "suite": {"name": suite.name, "fingerprint": suite.fingerprint},
        "weights": described(prepared.weights), "adapters": described(prepared.adapters),
        "forms": described(prepared.forms),
        "index": described({"index": prepared.index})["index"] if prepared.index else None,
        "versions": software_versions(),
    }
    write_atomic(run_dir / "run.yaml", yaml.safe_dump(resolved, sort_keys=False))
