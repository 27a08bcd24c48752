"""The comparison run: train what needs training, build the index, evaluate every configuration.

The path of one run, top to bottom:
    spec -> artifacts (tuning, cached by input hash) -> index (retrieval, cached)
         -> for each weights group: load once, attach each adapter in turn
         -> for each (configuration, task): evaluate unless a result with the same inputs exists
         -> reports
A result is reused only when its `input_key` — the fingerprints of model weights, adapter, index,
task data and every evaluation setting — matches, so a result is never served for another model.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import click
import yaml

from harness.artifacts import Artifact, prepare_adapters, prepare_index, prepare_weights
from harness.errors import DomainbenchError
from harness.models import default_device, load_model
from harness.spec import PROFILE_LIMITS, Configuration, RunSpec, resolve_profile
from reports.schema import load_result, result_path, write_result
from tasks.evaluate import evaluate_task, result_file
from tasks.suite import Suite, load_suite


def run(spec: RunSpec, *, rebuild_report: bool = True) -> Path:
    """Execute `spec` into `spec.run_dir`; returns the run directory."""
    device = spec.device or default_device()
    profile = resolve_profile(spec, device)
    click.echo(f"run {spec.name}: profile {profile} on {device} (model {spec.model}, suite {spec.suite})", err=True)
    suite = load_suite(spec.suite)
    tasks = suite.select(spec.tasks)
    configurations = spec.parsed_configurations()
    run_dir = spec.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    limit = spec.limit if spec.limit is not None else PROFILE_LIMITS[profile]

    weights = prepare_weights(spec, suite, configurations, profile=profile, run_dir=run_dir)
    adapters = prepare_adapters(spec, suite, configurations, profile=profile, run_dir=run_dir)
    index = prepare_index(spec, suite, profile=profile, run_dir=run_dir) if any(c.rag for c in configurations) else None
    _write_run_yaml(run_dir, spec, profile=profile, device=device, limit=limit, suite=suite,
                    weights=weights, adapters=adapters, index=index)

    for group in _weights_groups(configurations):
        pending = {c.name: [t for t in tasks if not _is_fresh(run_dir, c, t, weights, adapters, index, spec, limit)]
                   for c in group}
        if not any(pending.values()):
            click.echo(f"{', '.join(c.name for c in group)}: all results reused", err=True)
            continue
        loaded = load_model(str(weights[group[0].weights].path), device=device, dtype=spec.dtype,
                            trust_remote_code=spec.trust_remote_code)
        for configuration in group:
            if pending[configuration.name]:
                _evaluate_configuration(spec, suite, configuration, pending[configuration.name], loaded,
                                        weights, adapters, index, limit=limit, run_dir=run_dir)
    if rebuild_report:
        from reports.run_report import write_report

        write_report(run_dir)
    return run_dir


def _evaluate_configuration(spec, suite, configuration, tasks, loaded, weights, adapters, index, *, limit, run_dir):
    from harness.engine import Engine

    base_model = loaded.model
    model = base_model
    if configuration.adapter:
        model = _attach_adapter(base_model, adapters[configuration.adapter])
    try:
        engine = Engine(model, loaded.tokenizer, device=str(base_model.device))
        rag = _augmenter(index, loaded.tokenizer, engine, spec) if configuration.rag else None
        for task in tasks:
            click.echo(f"{configuration.name} / {task.name}", err=True)
            result = evaluate_task(task, engine, limit=limit, num_fewshot=spec.num_fewshot, seed=spec.seed, rag=rag)
            result.settings["input_key"] = _input_key(configuration, task, weights, adapters, index, spec, limit)
            result.cost["training"] = _training_cost(configuration, weights, adapters, index)
            adapter = adapters[configuration.adapter] if configuration.adapter else None
            record = result_file(result, run=spec.name, configuration=configuration.name, suite=suite,
                                 model_spec=spec.model, model_fingerprint=weights[configuration.weights].fingerprint,
                                 adapter=str(adapter.path) if adapter else None)
            record.model["weights"] = configuration.weights
            record.model["adapter_fingerprint"] = adapter.fingerprint if adapter else None
            record.model["index_fingerprint"] = index.fingerprint if (index and configuration.rag) else None
            write_result(result_path(run_dir, configuration.name, task.name), record)
    finally:
        if configuration.adapter:
            _detach_adapter(model)


def _attach_adapter(model, adapter: Artifact):
    """Wrap the loaded weights with a PEFT adapter without reloading them."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter.path), adapter_name=adapter.name).eval()


def _detach_adapter(peft_model) -> None:
    # LoRA layers are injected into the base modules in place: unload() takes them out again so
    # the next configuration sees the untouched weights. Prompt-learning adapters never touched them.
    if peft_model.active_peft_config.is_prompt_learning:
        return
    peft_model.unload()


def _augmenter(index, tokenizer, engine, spec: RunSpec):
    from retrieval.rag import RagAugmenter
    from retrieval.retriever import Retriever

    return RagAugmenter(Retriever.load(index.path), tokenizer, k=spec.rag.k,
                        context_budget_tokens=engine.max_length // 2)


def _weights_groups(configurations: list[Configuration]) -> list[list[Configuration]]:
    """Configurations grouped by weights; within a group, adapter-free ones first."""
    groups: dict[str, list[Configuration]] = {}
    for configuration in configurations:
        groups.setdefault(configuration.weights, []).append(configuration)
    return [sorted(group, key=lambda c: c.adapter is not None) for group in groups.values()]


def _input_key(configuration, task, weights, adapters, index, spec, limit) -> str:
    parts = {
        "weights": weights[configuration.weights].fingerprint,
        "adapter": adapters[configuration.adapter].fingerprint if configuration.adapter else None,
        "index": index.fingerprint if (index and configuration.rag) else None,
        "rag_k": spec.rag.k if configuration.rag else None,
        "task": task.fingerprint,
        "limit": limit, "num_fewshot": spec.num_fewshot, "seed": spec.seed,
        "dtype": spec.dtype,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _is_fresh(run_dir, configuration, task, weights, adapters, index, spec, limit) -> bool:
    path = result_path(run_dir, configuration.name, task.name)
    if not path.is_file():
        return False
    try:
        stored = load_result(path)
    except DomainbenchError:
        return False
    expected = _input_key(configuration, task, weights, adapters, index, spec, limit)
    return stored.settings.get("input_key") == expected


def _training_cost(configuration: Configuration, weights, adapters, index) -> dict:
    """The cost blocks of every artifact this configuration used, by artifact name."""
    used = [weights[configuration.weights]]
    if configuration.adapter:
        used.append(adapters[configuration.adapter])
    if configuration.rag and index is not None:
        used.append(index)
    return {artifact.name: artifact.cost for artifact in used if artifact.cost}


def _write_run_yaml(run_dir: Path, spec: RunSpec, *, profile, device, limit, suite: Suite, weights, adapters, index):
    from reports.schema import software_versions

    resolved = {
        "name": spec.name, "configurations": list(spec.configurations), "spec": spec.as_dict(), "profile": profile, "device": device, "limit_per_task": limit,
        "suite": {"name": suite.name, "fingerprint": suite.fingerprint},
        "weights": {name: {"path": str(w.path), "fingerprint": w.fingerprint} for name, w in weights.items()},
        "adapters": {name: {"path": str(a.path), "fingerprint": a.fingerprint} for name, a in adapters.items()},
        "index": {"path": str(index.path), "fingerprint": index.fingerprint} if index else None,
        "versions": software_versions(),
    }
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".run.yaml-")
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(resolved, handle, sort_keys=False)
    os.replace(tmp, run_dir / "run.yaml")
