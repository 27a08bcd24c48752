"""Building a form: its artifact in the cache, keyed by the hash of its inputs, with a manifest.

The manifest (`harness/manifest.py`, as for tuned artifacts) records the parent's fingerprint,
the settings and what the form cost to make; the form's own `make` writes the model files.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.atomic import staged_dir
from harness.manifest import code_versions, input_hash, read_manifest, reusable, write_manifest
from harness.models import cache_dir, model_fingerprint
from tuning.forms.base import FormBuild, FormSource, get_form
from tuning.forms.gguf import GGUF_FILE

SCHEMA_VERSION = 1


def build_form(form: str, source: FormSource, *, settings: dict, recipe: dict | None = None,
               suite=None) -> tuple[Path, dict]:
    """The artifact dir of `form` made from `source` (reused when its inputs match) and its manifest.

    `recipe` is the form's own (pruned: the prune recipe); `suite` gives pruning its calibration
    texts (train split) and, when the recipe heals, its training data.
    """
    build = FormBuild(source, settings, recipe, suite)
    inputs = form_inputs(form, build)
    key = input_hash(inputs)
    artifact = cache_dir() / "forms" / f"{form}-{key[:16]}"
    manifest = reusable(artifact, key)
    if manifest is not None:
        return artifact, manifest
    started = time.perf_counter()
    with staged_dir(artifact) as staging:
        details = get_form(form).make(build, staging)
        manifest = {"schema_version": SCHEMA_VERSION, "strategy": form, "kind": "form", "input_hash": key,
                    "inputs": inputs, **details,
                    "cost": {"wall_seconds": time.perf_counter() - started, "parent_bytes": model_bytes(source.path),
                             "artifact_bytes": model_bytes(form_model_path(staging))},
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_manifest(staging, manifest)
    return artifact, manifest


def form_inputs(form: str, build: FormBuild) -> dict:
    """Everything the artifact of `form` is made from: its cache key is the hash of this."""
    declared = get_form(form)
    return {"form": form, "parent": build.source.fingerprint, "adapter": build.source.adapter_fingerprint,
            "settings": {name: build.settings[name] for name in declared.settings},
            # Every form's inputs have carried these three keys since schema 1 (None where they do not
            # apply): dropping them would change the hash of every cached artifact.
            "prune": None, "suite": None, "gguf_source": None,
            **declared.inputs(build),
            "schema": SCHEMA_VERSION,
            # The code that makes it: a torchao or gguf upgrade makes the form again.
            "code": code_versions("torch", "transformers", *declared.libraries)}


def form_model_path(artifact: Path) -> Path:
    """What an engine loads for a form artifact: the GGUF file for `gguf`, else the dir."""
    gguf = Path(artifact) / GGUF_FILE
    return gguf if gguf.is_file() else Path(artifact)


def form_fingerprint(artifact: Path) -> str:
    """The form's own fingerprint: its model files, or its input hash for a GGUF (hashing the file is the same)."""
    path = form_model_path(artifact)
    if path.suffix == ".gguf":
        return read_manifest(artifact)["input_hash"]
    return model_fingerprint(path)


def model_bytes(path: Path) -> int:
    """Bytes of a model's weight files (what serving it loads)."""
    path = Path(path)
    if path.is_file():
        return path.resolve().stat().st_size  # a linked GGUF counts at its target's size
    return sum(f.stat().st_size for f in path.iterdir()
               if f.is_file() and f.suffix in (".safetensors", ".bin", ".gguf", ".pt"))
