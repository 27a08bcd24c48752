"""One configuration -> its engine, its retrieval and its fingerprints, each checked.

The public way to get a model ready to answer, whoever asks:
- the runner, from the artifacts it has just prepared (`Prepared`): `open_model`, `adapter_engine`,
  `rag_augmenter`;
- `serve` and anyone holding a finished run: `configuration_from_run(run_dir, "adapter+rag")`,
  rebuilt from the paths run.yaml records, each artifact's fingerprint on disk checked against the
  one the run recorded before anything loads;
- `eval`, `serve --model` and `monitor`: `configuration_from_spec("openai+http://…")`, any model
  spec the engine registry (engines/registry.py) knows, with an adapter and an index if asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from engines.base import Engine
from engines.registry import EngineOptions, engine_kind, open_engine
from harness.errors import DomainbenchError
from harness.models import detach_adapter, model_fingerprint, with_adapter
from run.artifacts import Artifact, Prepared
from run.spec import PROFILE_RAG_CONTEXT_TOKENS, Configuration, RagSettings, RunSpec, parse_configuration


@dataclass
class OpenedConfiguration:
    """A configuration ready to answer: its engine, its retrieval (for `+rag`) and what it is."""

    name: str
    engine: Engine
    augmenter: object | None = None   # retrieval.rag.RagAugmenter
    about: dict = field(default_factory=dict)  # fingerprints, run, engine kind

    def close(self) -> None:
        self.engine.close()


def load_key(configuration: Configuration) -> str:
    """What a configuration loads: its form (a merged adapter is inside it), else its weights."""
    return configuration.model_key if configuration.forms else configuration.weights_key


def open_model(model_key: str, prepared: Prepared, spec: RunSpec, *, progress: bool = True) -> Engine:
    """The engine on the model behind a model key: tuned weights, or a form (a model dir, or a GGUF file)."""
    from tuning.forms import form_model_path, model_bytes

    artifact = prepared.forms.get(model_key) or prepared.weights[model_key]
    path = form_model_path(artifact.path) if model_key in prepared.forms else artifact.path
    engine = open_engine(str(path), EngineOptions(device=prepared.device, dtype=spec.dtype,
                                                  trust_remote_code=spec.trust_remote_code, progress=progress))
    engine.model_bytes = model_bytes(path)
    return engine


def adapter_engine(engine: Engine, adapter: Artifact) -> Engine:
    """An engine on the same loaded weights with `adapter` put on them; `detach(…)` when done with it."""
    if not hasattr(engine, "model"):
        raise DomainbenchError(f"adapter {adapter.name}: {type(engine).__name__} runs no PEFT adapter beside the "
                               "weights; a form with the adapter merged into it can")
    attached = type(engine)(with_adapter(engine.model, adapter.path, name=adapter.name), engine.tokenizer,
                            progress=engine.progress)
    attached.model_bytes = getattr(engine, "model_bytes", None)
    return attached


def detach(engine: Engine) -> None:
    """Take the adapter `adapter_engine` put on off the shared weights again."""
    detach_adapter(engine.model)


def rag_augmenter(prepared: Prepared, engine: Engine, spec: RunSpec):
    """The run's retrieval in front of `engine`: its index, mode and k, within the profile's context budget."""
    return augmenter_for_index(prepared.index.path, engine, spec.rag.k, mode=spec.rag.retrieval,
                               budget_tokens=prepared.rag_context_tokens)


# ----- from a model spec -------------------------------------------------------------------------

def configuration_from_spec(model_spec: str, options: EngineOptions | None = None, *, name: str | None = None,
                            rag_index: Path | None = None, rag_k: int = 4,
                            rag_mode: str = RagSettings.retrieval) -> OpenedConfiguration:
    """Any model spec the engine registry knows, with `options.adapter` on it and `rag_index` in front if given."""
    options = options or EngineOptions()
    if options.adapter is not None:
        from harness.models import require_adapter_dir

        require_adapter_dir(options.adapter)
    kind = engine_kind(model_spec)
    engine = kind.open(model_spec, options)
    try:
        augmenter = augmenter_for_index(rag_index, engine, rag_k, mode=rag_mode) if rag_index else None
    except BaseException:
        engine.close()
        raise
    about = {"model_spec": model_spec, "engine": kind.name, "fingerprint": engine.fingerprint,
             "adapter_fingerprint": model_fingerprint(options.adapter) if options.adapter else None}
    return OpenedConfiguration(name or model_spec, engine, augmenter, about)


def augmenter_for_index(index: Path, engine: Engine, k: int, *, mode: str = RagSettings.retrieval,
                        budget_tokens: int | None = None):
    """Retrieval over the index dir `index` in front of `engine`: k passages ranked by `mode` (a run's
    `rag.retrieval`; hybrid by default), within `budget_tokens` and never over half the model's context."""
    from retrieval.bm25 import HybridRetriever
    from retrieval.rag import RagAugmenter

    if engine.tokenizer is None:
        raise DomainbenchError("retrieval with an endpoint needs its tokenizer (passages are budgeted in tokens)")
    budget = engine.max_length // 2 if budget_tokens is None else min(budget_tokens, engine.max_length // 2)
    return RagAugmenter(HybridRetriever.load(index, mode=mode), engine.tokenizer, k=k, context_budget_tokens=budget)


# ----- from a finished run -----------------------------------------------------------------------

def configuration_from_run(run_dir: Path, configuration: str, *, device: str | None = None,
                           progress: bool = False) -> OpenedConfiguration:
    """The model (and retriever) a run evaluated as `configuration`, from the artifacts run.yaml records."""
    resolved = read_run_yaml(Path(run_dir))
    if configuration not in resolved["configurations"]:
        raise DomainbenchError(f"run {run_dir}: did not evaluate configuration {configuration!r} "
                               f"(it has {', '.join(resolved['configurations'])})")
    values = dict(resolved["spec"])
    rag = RagSettings(**values.pop("rag"))
    spec = RunSpec(**values, rag=rag)
    config = parse_configuration(configuration)

    def artifacts(block: dict | None) -> dict[str, Artifact]:
        return {name: Artifact(name, Path(a["path"]), a["fingerprint"]) for name, a in (block or {}).items()}

    prepared = Prepared(
        weights=artifacts(resolved["weights"]), adapters=artifacts(resolved["adapters"]),
        forms=artifacts(resolved["forms"]),
        index=artifacts({"index": resolved["index"]})["index"] if resolved.get("index") else None,
        limit=resolved.get("limit_per_task"), rag_context_tokens=PROFILE_RAG_CONTEXT_TOKENS[resolved["profile"]],
        device=device or resolved["device"], dtype=spec.dtype or "auto")
    model_artifact = prepared.forms.get(config.model_key) or prepared.weights[config.weights_key]
    adapter = prepared.adapters[config.adapter_key] if config.adapter and not config.forms else None
    # Every artifact is fingerprinted again from what is on disk, before anything loads.
    fingerprints = {"fingerprint": check_unchanged(model_artifact, is_form=config.model_key in prepared.forms),
                    "adapter_fingerprint": check_unchanged(adapter, is_form=False) if adapter else None,
                    "index_fingerprint": check_index_unchanged(prepared.index) if config.rag else None}
    # As the runner groups them: a form is its own model; otherwise the weights, with the adapter put on.
    engine = open_model(load_key(config), prepared, spec, progress=progress)
    if adapter:
        engine = adapter_engine(engine, adapter)
    augmenter = rag_augmenter(prepared, engine, spec) if config.rag else None
    about = {"run": resolved["name"], "configuration": configuration, "engine": type(engine).__name__, **fingerprints}
    return OpenedConfiguration(f"{resolved['name']}/{configuration}", engine, augmenter, about)


def read_run_yaml(run_dir: Path) -> dict:
    path = Path(run_dir) / "run.yaml"
    if not path.is_file():
        raise DomainbenchError(f"run {run_dir}: no run.yaml (not a run directory, or the run never started)")
    return yaml.safe_load(path.read_text())


def check_unchanged(artifact: Artifact, *, is_form: bool) -> str:
    """The fingerprint of weights (or an adapter) on disk now; refused unless the run evaluated exactly them."""
    from tuning.forms import form_fingerprint

    if not artifact.path.exists():
        raise DomainbenchError(f"artifact {artifact.name}: {artifact.path} no longer exists")
    now = form_fingerprint(artifact.path) if is_form else model_fingerprint(artifact.path)
    _refuse_changed(artifact, now)
    return now


def check_index_unchanged(index: Artifact | None) -> str:
    """The index's input hash as its directory holds it now (its FAISS file checked against its manifest);
    refused unless it is the one the run evaluated: the directory is rebuilt in place when its inputs change."""
    from retrieval.index import load_index

    if index is None or not index.path.exists():
        raise DomainbenchError(f"artifact index: {index.path if index else 'the run records none'}: no index to serve")
    now = load_index(index.path).manifest["input_hash"]
    _refuse_changed(index, now)
    return now


def _refuse_changed(artifact: Artifact, now: str) -> None:
    if now != artifact.fingerprint:
        raise DomainbenchError(f"artifact {artifact.name}: {artifact.path} changed since the run evaluated it "
                               f"(fingerprint {now[:12]}, run recorded {artifact.fingerprint[:12]})")
