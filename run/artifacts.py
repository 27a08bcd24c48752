"""What a run's configurations need before evaluation: tuned weights, adapters, the index.

Each is built by its own room (tuning/, retrieval/) into the cache, keyed by the hash of its
inputs, so a rerun — of this run or of another run with the same inputs — reuses it. The run dir
gets a symlink per artifact (`runs/<name>/artifacts/<strategy>`) so a reader finds them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

from harness.manifest import read_manifest
from harness.models import cache_dir, gguf_origin, model_fingerprint, resolve_model
from run.spec import WEIGHTS, Configuration, RunSpec


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


def prepare_weights(spec: RunSpec, suite, configurations: list[Configuration], *, profile: str,
                    run_dir: Path) -> dict[str, Artifact]:
    """`base` plus the tuned weights (`finetuned`, `distilled`) the configurations use."""
    base = resolve_model(spec.model)
    weights = {"base": Artifact("base", base, model_fingerprint(base))}
    needed = {c.weights for c in configurations}
    # The finetuned weights first: they are the distilled student's teacher.
    for name in [name for name in WEIGHTS if name in needed and WEIGHTS[name] is not None]:
        teacher = _distill_teacher(spec, suite, weights, profile=profile, run_dir=run_dir) if name == "distilled" else None
        weights[name] = _tuned(WEIGHTS[name], spec, suite, profile=profile, run_dir=run_dir, teacher=teacher)
    return weights


def _distill_teacher(spec: RunSpec, suite, weights: dict[str, Artifact], *, profile: str,
                     run_dir: Path) -> Artifact | None:
    """The finetuned weights this run evaluates, when the distill recipe learns from `finetuned`.

    Trained here (with the run's `full` recipe) when the run does not evaluate `finetuned` itself.
    """
    from tuning.recipe import load_recipe

    recipe = spec.recipes.get("distill")
    method = load_recipe("distill", config=Path(recipe) if recipe else None, profile=profile).method
    if method["teacher"] != "finetuned":
        return None
    return weights.get("finetuned") or _tuned("full", spec, suite, profile=profile, run_dir=run_dir)


def prepare_adapters(spec: RunSpec, suite, configurations: list[Configuration], *, profile: str,
                     run_dir: Path) -> dict[str, Artifact]:
    """The PEFT adapters (trained on the base weights) the configurations use, by strategy."""
    strategies = dict.fromkeys(c.adapter for c in configurations if c.adapter)
    return {strategy: _tuned(strategy, spec, suite, profile=profile, run_dir=run_dir) for strategy in strategies}


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
        parent = weights[configuration.weights]
        adapter = adapters.get(configuration.adapter) if configuration.adapter else None
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
                path, manifest = build_form(name, source, settings=asdict(spec.forms), suite=suite,
                                            recipe=_form_recipe(spec, form, profile))
                _link(run_dir, key, path)
                forms[key] = Artifact(key, path, form_fingerprint(path), {**manifest["cost"], "form": name},
                                      built_from=[parent, *([merged] if merged else [])])
            parent = forms[key]
    return forms


def chain_key(configuration: Configuration, depth: int) -> str:
    """The model key of `configuration`'s chain up to its `depth`-th form."""
    parts = configuration.model_key.split("+")  # the forms are its last parts, in order
    return "+".join(parts[:len(parts) - (len(configuration.forms) - depth)])


def _form_recipe(spec: RunSpec, form, profile: str) -> dict | None:
    """The form's recipe (pruned: recipes.prune, or the defaults) for this profile; None for a form without one."""
    if form.recipe is None:
        return None
    path = spec.recipes.get(form.recipe)
    return form.load_recipe(Path(path) if path else None, profile)


def _tuned(strategy: str, spec: RunSpec, suite, *, profile: str, run_dir: Path,
           teacher: Artifact | None = None) -> Artifact:
    from tuning.artifact import convergence
    from tuning.strategies import tune

    click.echo(f"tuning: {strategy} ({profile} profile)", err=True)
    recipe = spec.recipes.get(strategy)
    path = tune(strategy, spec.model, suite, config=Path(recipe) if recipe else None, profile=profile,
                teacher=teacher.path if teacher else None)
    _link(run_dir, strategy, path)
    manifest = read_manifest(path)
    cost = {**manifest.get("cost", {}), "convergence": convergence(manifest)}
    return Artifact(strategy, path, model_fingerprint(path), cost, built_from=[teacher] if teacher else [])


def _link(run_dir: Path, name: str, target: Path) -> None:
    link = run_dir / "artifacts" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(Path(target).resolve(), link, target_is_directory=True)
