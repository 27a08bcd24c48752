"""What a run evaluates: one `Evaluation` per (configuration, task), decided before any model loads.

Each carries the key its result is kept under and what its configuration cost to make, so the
runner only has to ask the result store which are fresh and evaluate the rest.

A result is reused only when its input key — the fingerprints of model weights, adapter, form,
index, task data, every evaluation setting as resolved (code defaults included), and the versions
of domainbench and the libraries that compute the scores — matches, so a result is never served
for another model or another code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from harness.manifest import code_versions
from run.artifacts import Prepared, chain_key
from run.spec import Configuration, RunSpec, parse_configuration
from tasks.registry import task_module
from tasks.spec import TaskSpec


@dataclass(frozen=True)
class Evaluation:
    """One configuration on one task, with the inputs its result depends on already hashed."""

    configuration: Configuration
    task: TaskSpec
    input_key: str
    training_cost: dict
    # A `+rag` configuration on a task whose rag mode is off computes exactly what its retrieval-free
    # twin computes: the twin's result is copied instead (evaluating again costs minutes for nothing).
    twin: Evaluation | None = None

    @property
    def label(self) -> str:
        return f"{self.configuration.name} / {self.task.name}"


def plan_evaluations(configurations: list[Configuration], tasks: list[TaskSpec], prepared: Prepared,
                     spec: RunSpec) -> list[Evaluation]:
    """Every (configuration, task) of the run, in the run's order."""
    return [_evaluation(configuration, task, prepared, spec) for configuration in configurations for task in tasks]


def _evaluation(configuration: Configuration, task: TaskSpec, prepared: Prepared, spec: RunSpec) -> Evaluation:
    twin = None
    if configuration.rag and task.rag == "off":
        parts = [part for part in configuration.name.split("+") if part != "rag"]
        twin = _evaluation(parse_configuration("+".join(parts) or "base"), task, prepared, spec)
    return Evaluation(configuration, task, input_key(configuration, task, prepared, spec),
                      training_cost(configuration, prepared), twin)


def input_key(configuration: Configuration, task: TaskSpec, prepared: Prepared, spec: RunSpec) -> str:
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
        "code": scoring_code(configuration),
        "limit": prepared.limit, "num_fewshot": spec.num_fewshot, "seed": spec.seed,
        # What the scores were computed with, not what was asked: an fp32 CPU result is not a bf16 GPU one.
        "device": _device_kind(prepared.device), "dtype": prepared.dtype,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def scoring_code(configuration: Configuration) -> dict[str, str | None]:
    """domainbench's version and those of the libraries that compute this configuration's scores."""
    from tuning.forms import get_form

    libraries = ["torch", "transformers"]
    libraries += ["peft"] if configuration.adapter else []
    libraries += [library for form in configuration.forms for library in get_form(form).libraries]
    return code_versions(*libraries)


def _device_kind(device: str) -> str:
    """`cuda:1` and `cuda` compute alike; the kind of device is what a score depends on."""
    return device.split(":")[0]


def training_cost(configuration: Configuration, prepared: Prepared) -> dict:
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
