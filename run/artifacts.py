"""What a run's configurations need before evaluation: tuned weights, adapters, the index.

Each is built by its own room (tuning/, retrieval/) into the cache, keyed by the hash of its
inputs, so a rerun — of this run or of another run with the same inputs — reuses it. The run dir
gets a symlink per artifact (`runs/<name>/artifacts/<strategy>`) so a reader finds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import click

from engines.registry import is_endpoint
from harness.manifest import read_manifest
from harness.models import cache_dir, default_device, gguf_origin, model_fingerprint, parse_dtype, resolve_model
from run.spec import PROFILE_LIMITS, PROFILE_RAG_CONTEXT_TOKENS, WEIGHTS, Configuration, RunSpec
from tuning.augment.card import CARD_NAME


@dataclass
class Artifact:
    """A tuned model, an adapter or an index: where it is, its fingerprint, what it cost.

    `built_from` holds the artifacts it could not exist without (a distilled student's teacher),
    whose cost is part of its own.
    """

    name: str
    path: Path
    fingerprint: str
    cost: dict = field(default_factory=dict)
    built_from: list["Artifact"] = field(default_factory=list)


@dataclass
class Prepared:
    """Everything a run's configurations are built from, each with its fingerprint."""

    weights: dict[str, Artifact]
    adapters: dict[str, Artifact]
    forms: dict[str, Artifact]        # by model key: `adapter+merged`, `base+gguf`, …
    index: Artifact | None
    limit: int | None
    rag_context_tokens: int
    device: str
    dtype: str                        # the dtype the weights are evaluated in, resolved for `device`


def prepare(spec: RunSpec, suite, configurations: list[Configuration], *, profile: str, device: str,
            run_dir: Path) -> Prepared:
    """Every artifact the configurations need (built, or found in the cache) and the settings they run under."""
    weights = prepare_weights(spec, suite, configurations, profile=profile, run_dir=run_dir)
    adapters = prepare_adapters(spec, suite, configurations, profile=profile, run_dir=run_dir)
    needs_index = any(c.rag for c in configurations)
    return Prepared(
        weights=weights, adapters=adapters,
        forms=prepare_forms(spec, suite, configurations, weights, adapters, profile=profile, run_dir=run_dir),
        index=prepare_index(spec, suite, profile=profile, run_dir=run_dir) if needs_index else None,
        limit=spec.limit if spec.limit is not None else PROFILE_LIMITS[profile],
        rag_context_tokens=PROFILE_RAG_CONTEXT_TOKENS[profile],
        device=device, dtype=str(parse_dtype(spec.dtype, device)).removeprefix("torch."))


def prepare_weights(spec: RunSpec, suite, configurations: list[Configuration], *, profile: str,
                    run_dir: Path) -> dict[str, Artifact]:
    """`base` plus the tuned weights (`finetuned`, `distilled@rc`, …) the configurations use, by weights key."""
    base = resolve_model(spec.model)
    weights = {"base": Artifact("base", base, model_fingerprint(base))}
    needed = {(c.weights, c.weights_key): None for c in configurations if WEIGHTS[c.weights] is not None}
    # The finetuned weights first: they are the distilled student's teacher.
    for name, key in sorted(needed, key=lambda pair: list(WEIGHTS).index(pair[0])):
        teacher = _distill_teacher(spec, suite, weights, profile=profile, run_dir=run_dir) if name == "distilled" else None
        weights[key] = _tuned(WEIGHTS[name], spec, suite, profile=profile, run_dir=run_dir, teacher=teacher,
                              variant=key.partition("@")[2] or None)
    return weights


def _distill_teacher(spec: RunSpec, suite, weights: dict[str, Artifact], *, profile: str,
                     run_dir: Path) -> Artifact | None:
    """The finetuned weights this run evaluates, when the distill recipe learns from `finetuned`.

    Trained here (with the run's `full` recipe) when the run does not evaluate `finetuned` itself.
    """
    if spec.recipe("distill", profile).method["teacher"] != "finetuned":
        return None
    return weights.get("finetuned") or _tuned("full", spec, suite, profile=profile, run_dir=run_dir)


def prepare_adapters(spec: RunSpec, suite, configurations: list[Configuration], *, profile: str,
                     run_dir: Path) -> dict[str, Artifact]:
    """The PEFT adapters (trained on the base weights) the configurations use, by adapter key (`lora`, `lora@rc`)."""
    keys = dict.fromkeys((c.adapter, c.adapter_key) for c in configurations if c.adapter)
    return {key: _tuned(strategy, spec, suite, profile=profile, run_dir=run_dir, variant=key.partition("@")[2] or None)
            for strategy, key in keys}


def prepare_index(spec: RunSpec, suite, *, profile: str, run_dir: Path) -> Artifact:
    """The FAISS knowledge base over the suite's whole corpus, in every profile.

    Which passages an example may see is the task's rag policy (tasks.rag_policy), applied at
    query time; cutting the knowledge base to the test pages would leave questions about dev or
    train pages unanswerable, which is not the deployment being measured.
    """
    from harness.errors import DomainbenchError
    from retrieval.corpus import load_corpus
    from retrieval.index import build_index

    if suite.corpus is None:
        raise DomainbenchError(f"suite {suite.name}: names no corpus, so rag configurations have no knowledge base")
    documents = load_corpus(suite.corpus)
    scope = "whole corpus"
    out = cache_dir() / "indexes" / f"{suite.name}-{spec.rag.encoder}-{spec.rag.kind}-whole-corpus"
    click.echo(f"index: {len(documents)} documents ({scope}) with {spec.rag.encoder}, {spec.rag.kind}", err=True)
    built = build_index(documents, out, encoder=spec.rag.encoder, kind=spec.rag.kind, source=str(suite.corpus))
    _link(run_dir, "index", out)
    manifest = built.manifest
    cost = {"wall_seconds": manifest.get("build_seconds"), "chunks": manifest["counts"]["chunks"],
            "chunks_per_second": manifest.get("chunks_per_second"), "scope": scope,
            "artifact_bytes": sum(f.stat().st_size for f in out.iterdir() if f.is_file())}
    return Artifact("index", out, manifest["input_hash"], cost)


def prepare_forms(spec: RunSpec, suite, configurations: list[Configuration], weights: dict[str, Artifact],
                  adapters: dict[str, Artifact], *, profile: str, run_dir: Path) -> dict[str, Artifact]:
    """The deployable forms the configurations use, by model key (`adapter+merged`, `base+gguf`, …).

    Each form is made from its parent — the previous form of the chain, or the weights (with the
    adapter, for `merged`) — and carries its parent chain in `built_from`, so its cost shows what
    the whole chain took.
    """
    from tuning.forms import FormSource, build_form, form_fingerprint, get_form

    forms: dict[str, Artifact] = {}
    for configuration in configurations:
        parent = weights[configuration.weights_key]
        adapter = adapters.get(configuration.adapter_key) if configuration.adapter else None
        for depth, name in enumerate(configuration.forms, start=1):
            key = chain_key(configuration, depth)
            if key not in forms:
                click.echo(f"form: {key}", err=True)
                form = get_form(name)
                merged = adapter if form.merges else None
                source = FormSource(parent.path, parent.fingerprint,
                                    adapter=merged.path if merged else None,
                                    adapter_fingerprint=merged.fingerprint if merged else None,
                                    gguf=gguf_origin(spec.model) if parent.name == "base" else None)
                path, manifest = build_form(name, source, settings=dict(spec.forms), suite=suite,
                                            recipe=spec.form_recipe(form, profile))
                _link(run_dir, key, path)
                forms[key] = Artifact(key, path, form_fingerprint(path), {**manifest["cost"], "form": name},
                                      built_from=[parent, *([merged] if merged else [])])
            parent = forms[key]
    return forms


def chain_key(configuration: Configuration, depth: int) -> str:
    """The model key of `configuration`'s chain up to its `depth`-th form."""
    parts = configuration.model_key.split("+")  # the forms are its last parts, in order
    return "+".join(parts[:len(parts) - (len(configuration.forms) - depth)])


def _tuned(strategy: str, spec: RunSpec, suite, *, profile: str, run_dir: Path,
           teacher: Artifact | None = None, variant: str | None = None) -> Artifact:
    """The strategy's artifact (`lora`, or `lora@rc` for a variant), trained or found in the cache."""
    from tuning.artifact import convergence
    from tuning.strategies import tune

    name = f"{strategy}@{variant}" if variant else strategy
    click.echo(f"tuning: {name} ({profile} profile)", err=True)
    recipe = spec.recipe(strategy, profile, variant)
    with _generator(spec, variant, recipe) as generator:
        path = tune(strategy, spec.model, suite, recipe=recipe, teacher=teacher.path if teacher else None,
                    generator=generator)
    _link(run_dir, name, path)
    manifest = read_manifest(path)
    cost = {**manifest.get("cost", {}), "convergence": convergence(manifest)}
    augmentation = cost.pop("augmentation", None)
    built_from = [teacher] if teacher else []
    if augmentation is not None:
        built_from.append(_augmentation_item(name, path, augmentation, manifest["input_hash"]))
    return Artifact(name, path, model_fingerprint(path), cost, built_from=built_from)


@contextlib.contextmanager
def _generator(spec: RunSpec, variant: str | None, recipe):
    """The synthetic-qa generator of `variant` (its model opened on the run's device, closed after), else None."""
    from engines.registry import EngineOptions, open_engine
    from tuning.augment.settings import SYNTHETIC_QA
    from tuning.augment.synthetic_qa import Generator, engine_generate

    if recipe.augment.method != SYNTHETIC_QA:
        yield None
        return
    model = spec.generator(variant)
    click.echo(f"synthetic-qa ({variant}): generator {model}", err=True)
    remote = is_endpoint(model)  # a server holds the model: no device or dtype of ours applies
    device = "endpoint" if remote else spec.device or default_device()
    engine = open_engine(model, EngineOptions(device=None if remote else device, dtype=None if remote else spec.dtype,
                                              trust_remote_code=spec.trust_remote_code))
    try:
        settings = recipe.augment.synthetic_qa
        kept = hashlib.sha256(json.dumps([engine.fingerprint, settings.max_new_tokens]).encode()).hexdigest()
        yield Generator(engine_generate(engine, settings), engine.fingerprint, device=device,
                        tokenizer=engine.tokenizer,
                        outputs_dir=cache_dir() / "synthetic-qa" / kept[:16])
    finally:
        engine.close()


def _augmentation_item(name: str, path: Path, cost: dict, input_hash: str) -> Artifact:
    """An augmented artifact's data making as an item of its own: what it took and its data card.

    The card's path is the run dir's (`artifacts/<name>/augmented-data.md`, through the artifact's
    link), so a report links it relatively.
    """
    return Artifact(f"{name} data", path / CARD_NAME, input_hash,
                    {**cost, "purpose": "augmentation", "data_card": f"artifacts/{name}/{CARD_NAME}"})


def _link(run_dir: Path, name: str, target: Path) -> None:
    link = run_dir / "artifacts" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(Path(target).resolve(), link, target_is_directory=True)
