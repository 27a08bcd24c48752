"""The comparison run: train what needs training, build the index, evaluate every configuration.

The path of one run, top to bottom:
    spec -> preflight (every problem before anything trains)
         -> artifacts (tuning, retrieval; cached by input hash)
         -> evaluations (one per configuration and task, each with its input key: run/evaluations.py)
         -> for each weights group: load once, attach each adapter in turn, evaluate what is not fresh
         -> reports
A GGUF runs in llama.cpp in a process of its own: when that crashes, its configurations are recorded
as crashed (reports/crashes.py), the others go on, and a rerun retries only the crashed ones.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import yaml

from engines.isolated import EngineCrashed, IsolatedEngine
from harness.atomic import write_atomic
from harness.errors import DomainbenchError
from harness.models import default_device
from reports.schema import ResultFile, result_file
from reports.store import ResultStore
from run.artifacts import Artifact, Prepared, prepare
from run.configuration import adapter_engine, detach, load_key, open_model, rag_augmenter
from run.evaluations import Evaluation, plan_evaluations
from run.preflight import check_run
from run.spec import RunSpec, resolve_profile
from tasks.evaluate import evaluate_task
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

    prepared = prepare(spec, suite, configurations, profile=profile, device=device, run_dir=run_dir)
    _write_run_yaml(run_dir, spec, prepared, profile=profile, device=device, suite=suite)
    store = ResultStore(run_dir)
    store.clear_crashes()  # this attempt retries them
    crashed = {}
    for model_key, by_adapter in _grouped(plan_evaluations(configurations, tasks, prepared, spec)).items():
        pending = {adapter: [e for e in evaluations if not _is_fresh(store, e)]
                   for adapter, evaluations in by_adapter.items()}
        if not any(pending.values()):
            names = dict.fromkeys(e.configuration.name for group in by_adapter.values() for e in group)
            click.echo(f"{', '.join(names)}: all results reused", err=True)
            continue
        try:
            _evaluate_model(model_key, pending, spec, suite, prepared, store)
        except EngineCrashed as crash:
            # The engine took only its own configurations down: say which, and go on with the others.
            unfinished = dict.fromkeys(e.configuration.name for group in pending.values() for e in group
                                       if not _is_fresh(store, e))
            for name in unfinished:
                store.record_crash(name, str(crash))
                crashed[name] = str(crash)
            click.echo(f"{', '.join(unfinished)}: {crash}; the other configurations go on", err=True)
    if rebuild_report:
        from reports.run_report import write_report

        write_report(run_dir)
    if crashed:
        raise DomainbenchError(f"run {spec.name}: {'; '.join(f'{n}: {why}' for n, why in crashed.items())} "
                               "(the other configurations finished; run it again to retry only these)")
    return run_dir


def _evaluate_model(model_key: str, pending: dict[str | None, list[Evaluation]], spec: RunSpec, suite: Suite,
                    prepared: Prepared, store: ResultStore) -> None:
    """Open one model and run its pending evaluations, each adapter put on in turn."""
    reset_peak_memory()  # each model's serving peak is its own, not the previous model's
    engine = open_model(model_key, prepared, spec)
    try:
        for adapter, evaluations in pending.items():
            if not evaluations:
                continue
            attached = adapter_engine(engine, prepared.adapters[adapter]) if adapter else engine
            try:
                augmenters = {}  # one retriever per configuration, loaded on its first evaluation
                for evaluation in evaluations:
                    if evaluation.twin and _copy_twin_result(evaluation, prepared, store):
                        continue
                    name = evaluation.configuration.name
                    if evaluation.configuration.rag and name not in augmenters:
                        augmenters[name] = rag_augmenter(prepared, attached, spec)
                    result = evaluate_task(evaluation.task, attached, limit=prepared.limit,
                                           num_fewshot=spec.num_fewshot, seed=spec.seed, rag=augmenters.get(name),
                                           label=evaluation.label)
                    store.save(_result_record(result, evaluation, attached, spec, suite, prepared))
            finally:
                if adapter:
                    detach(attached)
    finally:
        engine.close()  # llama.cpp's process, with its model and context


def _result_record(result, evaluation: Evaluation, engine, spec: RunSpec, suite: Suite,
                   prepared: Prepared) -> ResultFile:
    """The result file of one evaluation: its metrics and examples, the inputs it was computed from, its costs."""
    configuration = evaluation.configuration
    adapter = prepared.adapters[configuration.adapter_key] if configuration.adapter else None
    model_artifact = prepared.forms.get(configuration.model_key) or prepared.weights[configuration.weights_key]
    result.settings["input_key"] = evaluation.input_key
    result.cost["training"] = evaluation.training_cost
    result.cost["serving"] = _serving_cost(engine, model_artifact, adapter, merged=configuration.merged)
    record = result_file(result, run=spec.name, configuration=configuration.name, suite=suite,
                         model_spec=spec.model, model_fingerprint=model_artifact.fingerprint,
                         adapter=str(adapter.path) if adapter else None)
    record.model.update(weights=configuration.weights, adapter_fingerprint=adapter.fingerprint if adapter else None,
                        forms=list(configuration.forms), parent=configuration.parent, variant=configuration.variant,
                        variant_of=configuration.plain,
                        index_fingerprint=prepared.index.fingerprint if configuration.rag else None)
    return record


def _serving_cost(engine, model_artifact: Artifact, adapter: Artifact | None, *, merged: bool) -> dict:
    """What it takes to serve this configuration's model: bytes on disk, peak resident memory, dtype.

    The peak is the process's resident high-water mark since this model was loaded (the window
    opens before loading), so it counts the weights in memory plus evaluation's working set. An
    isolated engine's is its own process's peak: that process has loaded this one model.
    """
    bytes_on_disk = getattr(engine, "model_bytes", None)
    if adapter is not None and not merged:
        bytes_on_disk = (bytes_on_disk or 0) + adapter.cost.get("artifact_bytes", 0)
    isolated = isinstance(engine, IsolatedEngine)
    peak, kind = engine.peak_memory() if isolated else peak_memory()
    return {"model_bytes": bytes_on_disk, "peak_memory_bytes": peak, "peak_memory_kind": kind,
            "engine": engine.engine_class if isolated else type(engine).__name__,
            "dtype": getattr(engine, "dtype", None),
            "model_fingerprint": model_artifact.fingerprint}


def _copy_twin_result(evaluation: Evaluation, prepared: Prepared, store: ResultStore) -> bool:
    """Give a `+rag` configuration on a task whose rag mode is off the result of its retrieval-free twin.

    False when the twin has no fresh result (then the configuration is evaluated itself).
    """
    twin = evaluation.twin
    stored = store.fresh(twin.configuration.name, twin.task.name, twin.input_key)
    if stored is None:
        return False
    configuration = evaluation.configuration
    settings = {**stored.settings, "rag": {"mode": "off"}, "input_key": evaluation.input_key,
                "same_as": twin.configuration.name}
    store.save(replace(stored, configuration=configuration.name, settings=settings,
                       cost={**stored.cost, "training": evaluation.training_cost},
                       model={**stored.model, "index_fingerprint": prepared.index.fingerprint}))
    click.echo(f"{evaluation.label}: retrieval is off for this task, the result of {twin.configuration.name}",
               err=True)
    return True
def _grouped(evaluations: list[Evaluation]) -> dict[str, dict[str | None, list[Evaluation]]]:
    """model -> adapter -> evaluations, adapter-free first: each model loads once, each adapter attaches once.

    A form is its own model (a merged adapter is inside its weights); plain configurations group
    by their weights, with the adapters attached in turn.
    """
    groups: dict[str, dict[str | None, list[Evaluation]]] = {}
    for evaluation in sorted(evaluations, key=lambda e: e.configuration.adapter is not None):
        configuration = evaluation.configuration
        adapter = None if configuration.forms else configuration.adapter
        groups.setdefault(load_key(configuration), {}).setdefault(adapter, []).append(evaluation)
    return groups


def _is_fresh(store: ResultStore, evaluation: Evaluation) -> bool:
    return store.fresh(evaluation.configuration.name, evaluation.task.name, evaluation.input_key) is not None


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
