"""Deployable forms of a model: merged, pruned, int8, nf4, gguf — each an artifact cached by input hash.

A form is made from its parent (a model dir, plus a LoRA adapter for `merged`) and saved in the
format it is deployed in, so it loads without the run that made it:
- `merged`: PEFT's `merge_and_unload`, saved as a plain Hugging Face model dir;
- `pruned`: whole decoder layers removed by measured importance (tuning/prune.py), a smaller HF dir;
- `int8`: torchao int8 weights (optionally with dynamic int8 activations), an HF dir whose
  config carries the quantization, so `from_pretrained` restores it;
- `nf4`: bitsandbytes 4-bit NormalFloat (CUDA only), an HF dir likewise;
- `gguf`: a GGUF file llama.cpp runs — the source file itself when the parent *is* a GGUF model
  (the builtin), else an export (tuning/gguf_export.py).
The manifest (`harness/manifest.py`, as for tuned artifacts) records the parent's
fingerprint, the settings and what the form cost to make.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness.atomic import staged_dir
from harness.errors import DomainbenchError
from harness.manifest import input_hash, read_manifest, reusable, write_manifest
from harness.models import cache_dir, load_tokenizer, model_fingerprint

GGUF_FILE = "model.gguf"
SCHEMA_VERSION = 1


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


def build_form(form: str, source: FormSource, *, settings: dict, prune_recipe: dict | None = None,
               suite=None) -> tuple[Path, dict]:
    """The artifact dir of `form` made from `source` (reused when its inputs match) and its manifest.

    `suite` gives pruning its calibration texts (train split) and, when the recipe heals, its training data.
    """
    inputs = {"form": form, "parent": source.fingerprint, "adapter": source.adapter_fingerprint,
              "settings": _relevant_settings(form, settings), "prune": prune_recipe if form == "pruned" else None,
              # Pruning measures layers on the suite's train texts (and heals on its train split).
              "suite": {"name": suite.name, "fingerprint": suite.fingerprint} if form == "pruned" else None,
              "gguf_source": str(source.gguf) if form == "gguf" and source.gguf else None,
              "schema": SCHEMA_VERSION}
    key = input_hash(inputs)
    artifact = cache_dir() / "forms" / f"{form}-{key[:16]}"
    manifest = reusable(artifact, key)
    if manifest is not None:
        return artifact, manifest
    started = time.perf_counter()
    with staged_dir(artifact) as staging:
        details = _MAKERS[form](source, staging, settings=settings, prune_recipe=prune_recipe, suite=suite)
        manifest = {"schema_version": SCHEMA_VERSION, "strategy": form, "kind": "form", "input_hash": key,
                    "inputs": inputs, **details,
                    "cost": {"wall_seconds": time.perf_counter() - started, "parent_bytes": model_bytes(source.path),
                             "artifact_bytes": model_bytes(form_model_path(staging))},
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_manifest(staging, manifest)
    return artifact, manifest


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


# ----- the makers: each writes its form into `directory` and returns details for the manifest -------

def _merged(source: FormSource, directory: Path, **_) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if source.adapter is None:
        raise DomainbenchError("merged: no adapter to merge")
    # fp32: merging adds the low-rank update to the weights; in bf16 the sum would round twice.
    base = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(source.adapter))
    if model.active_peft_config.is_prompt_learning:
        raise DomainbenchError(f"merged: {source.adapter} is a prompt-learning adapter; it has no weights to merge")
    merged = model.merge_and_unload()
    merged.save_pretrained(directory)
    load_tokenizer(source.path).save_pretrained(directory)
    return {"merged_adapter": str(source.adapter)}


def _int8(source: FormSource, directory: Path, *, settings: dict, **_) -> dict:
    from tuning.quantize import save_int8

    return save_int8(source.path, directory, scheme=settings["int8"])


def _nf4(source: FormSource, directory: Path, **_) -> dict:
    from tuning.quantize import save_nf4

    return save_nf4(source.path, directory)


def _pruned(source: FormSource, directory: Path, *, prune_recipe: dict, suite, **_) -> dict:
    from tuning.prune import calibration_texts, prune_model

    texts = calibration_texts(suite, prune_recipe["method"]["calibration_examples"], prune_recipe["seed"])
    manifest = prune_model(source.path, directory, prune_recipe, calibration_texts=texts, suite=suite)
    return {"pruning": {**manifest["pruning"], "size": manifest["size"], "heal": manifest["heal"]}}


def _gguf(source: FormSource, directory: Path, *, settings: dict, **_) -> dict:
    # llama.cpp is fed the token ids of the parent's HF tokenizer (engines/llama_cpp.py): it travels along.
    load_tokenizer(source.path).save_pretrained(directory)
    if source.gguf is not None:
        # The parent was converted from this file: the form llama.cpp runs is the file itself.
        (directory / GGUF_FILE).symlink_to(source.gguf.resolve())
        return {"gguf": {"source": str(source.gguf), "exported": False}}
    from tuning.gguf_export import export_gguf

    export_gguf(source.path, directory / GGUF_FILE, quant=settings["gguf_type"])
    return {"gguf": {"source": None, "exported": True, "type": settings["gguf_type"]}}


_MAKERS = {"merged": _merged, "int8": _int8, "nf4": _nf4, "pruned": _pruned, "gguf": _gguf}


def _relevant_settings(form: str, settings: dict) -> dict:
    return {"int8": {"int8": settings["int8"]}, "gguf": {"gguf_type": settings["gguf_type"]}}.get(form, {})


def model_bytes(path: Path) -> int:
    """Bytes of a model's weight files (what serving it loads)."""
    path = Path(path)
    if path.is_file():
        return path.resolve().stat().st_size  # a linked GGUF counts at its target's size
    return sum(f.stat().st_size for f in path.iterdir()
               if f.is_file() and f.suffix in (".safetensors", ".bin", ".gguf", ".pt"))
