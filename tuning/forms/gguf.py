"""`gguf`: a GGUF file llama.cpp runs — the source file itself when the parent *is* a GGUF model
(the builtin), else an export (tuning/gguf_export.py) in the `forms.gguf_type` the run names."""

from __future__ import annotations

from pathlib import Path

from harness.models import gguf_origin, load_tokenizer, resolve_model
from tuning.forms.base import Form, FormBuild, FormSetting, FormUse, importable, register_form

GGUF_FILE = "model.gguf"
# tuning.gguf_export.QUANT_TYPES' names; importing that module here would load torch with the registry.
GGUF_TYPES = ("f16", "q8_0", "q4_k_m")


def make_gguf(build: FormBuild, directory: Path) -> dict:
    source = build.source
    # llama.cpp is fed the token ids of the parent's HF tokenizer (engines/llama_cpp.py): it travels along.
    load_tokenizer(source.path).save_pretrained(directory)
    if source.gguf is not None:
        # The parent was converted from this file: the form llama.cpp runs is the file itself.
        (directory / GGUF_FILE).symlink_to(source.gguf.resolve())
        return {"gguf": {"source": str(source.gguf), "exported": False}}
    from tuning.gguf_export import export_gguf

    export_gguf(source.path, directory / GGUF_FILE, quant=build.settings["gguf_type"])
    return {"gguf": {"source": None, "exported": True, "type": build.settings["gguf_type"]}}


def gguf_inputs(build: FormBuild) -> dict:
    return {"gguf_source": str(build.source.gguf) if build.source.gguf else None}


def gguf_requirements(use: FormUse) -> list[str]:
    problems = []
    if not importable("llama_cpp"):
        problems.append(f"{use.names}: gguf runs through llama.cpp, which needs llama-cpp-python "
                        "(pip install llama-cpp-python; make setup installs it)")
    return problems + _export_problems(use)


def _export_problems(use: FormUse) -> list[str]:
    """A gguf form of weights that are not a GGUF file already needs an exporter for their architecture."""
    from harness.errors import DomainbenchError
    from tuning.gguf_export import check_exportable

    exported = [c.name for c in use.configurations
                if not (c.model_key.split("+")[0] == "base" and gguf_origin(use.model) is not None)]
    if not exported:
        return []
    # Tuned, merged and pruned weights keep the base model's architecture: checking the base is enough.
    try:
        check_exportable(resolve_model(use.model))
    except DomainbenchError as exc:
        return [f"{', '.join(exported)}: {exc}"]
    return []


GGUF = register_form(Form(name="gguf", order=50, make=make_gguf, settings={"gguf_type": FormSetting("q8_0", GGUF_TYPES)},
                          inputs=gguf_inputs, excludes=("int8", "nf4"),
                          excludes_why="gguf carries its own quantization (settings forms.gguf_type); "
                                       "it does not stack on int8 or nf4",
                          requirements=gguf_requirements, engine="llama.cpp", libraries=("llama-cpp-python", "gguf")))
