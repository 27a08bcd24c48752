"""`domainbench serve`: an OpenAI-compatible server for exactly the model a run evaluated.

    served = served_from_run(run_dir, "adapter+rag")      # or served_from_spec("smollm2-135m-instruct")
    uvicorn.run(serve.api.create_app(served), host="127.0.0.1", port=8000)   # or serve.process.serve

The model is rebuilt the way the runner built it (run/configuration.py, the one configuration loader): the weights
(or a form — a model dir, or a GGUF file run by llama.cpp in a process of its own) from the paths run.yaml
records, the PEFT adapter attached, and for `+rag` the retriever over the run's index in front.
Each artifact's fingerprint on disk must still equal the one the run recorded.

The HTTP endpoints (OpenAI-compatible completions and chat, models, health, Prometheus metrics)
are serve/api.py's; the process (socket, SIGTERM drain) is serve/process.py's.

The served model itself (one thread driving the engine, batching, streaming) is serve/model.py's.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import DomainbenchError
from run.configuration import check_unchanged, read_run_yaml
from serve.model import ServedModel

__all__ = ["ServedModel", "served_from_run", "served_from_spec"]

# ----- building the model --------------------------------------------------------------------------

def served_from_spec(spec: str, *, device: str | None = None, dtype: str | None = None) -> ServedModel:
    """A model spec (builtin name, HF dir, .gguf) served by the engine the registry gives it."""
    from engines.registry import EngineOptions
    from run.configuration import configuration_from_spec

    opened = configuration_from_spec(spec, EngineOptions(device=device, dtype=dtype, progress=False))
    return ServedModel(spec, opened.engine, opened.augmenter, about={
        "model_spec": spec, "fingerprint": opened.about["fingerprint"], "engine": type(opened.engine).__name__})


def gguf_to_serve(run_dir: Path | None, configuration: str | None, model_spec: str | None) -> Path:
    """The GGUF file behind a `.gguf` model spec, or behind a run's gguf form; one line when there is none."""
    if model_spec is not None:
        path = Path(model_spec).expanduser()
        if path.suffix != ".gguf" or not path.is_file():
            raise DomainbenchError(f"serve --engine llama.cpp: --model {model_spec} is not a .gguf file")
        return path
    from run.spec import parse_configuration
    from tuning.forms import chain_engine, form_model_path

    config = parse_configuration(configuration)
    if chain_engine(config.forms) != "llama.cpp" or config.rag:
        raise DomainbenchError(f"serve --engine llama.cpp: {configuration} is not a gguf form without retrieval "
                               "(llama.cpp's server cannot put retrieval in front)")
    resolved = read_run_yaml(Path(run_dir))
    form = (resolved.get("forms") or {}).get(config.model_key)
    if configuration not in resolved["configurations"] or form is None:
        raise DomainbenchError(f"run {run_dir}: did not evaluate configuration {configuration!r}")
    return form_model_path(Path(form["path"]))


def serve_with_llama_cpp(gguf: Path, *, host: str, port: int, api_key: str | None = None) -> None:
    """Replace this process with llama.cpp's OpenAI-compatible server on `gguf` (same PID, so stop it by PID).

    `--interrupt_requests false`: by default llama-cpp-python's server cancels a running stream
    when the next request arrives, which a load test would count as short successes. The server
    starts through engines/llama_server.py, which loads the model as our llama.cpp engine does
    (no AMX repacking, which faults).
    """
    import importlib.util
    import os
    import sys

    if importlib.util.find_spec("llama_cpp.server") is None or importlib.util.find_spec("uvicorn") is None:
        raise DomainbenchError("serve --engine llama.cpp: needs llama-cpp-python's server extra "
                               "(pip install 'llama-cpp-python[server]'; make setup installs it)")
    os.execv(sys.executable, [sys.executable, "-m", "engines.llama_server", "--model", str(gguf), "--host", host,
                              "--port", str(port), "--n_ctx", "2048", "--interrupt_requests", "false",
                              "--verbose", "false", *(["--api_key", api_key] if api_key else [])])


def vllm_model(run_dir: Path | None, configuration: str | None, model_spec: str | None) -> tuple[Path, str, str]:
    """(HF model dir, served model name, dtype) for `vllm serve`; one line when vLLM cannot serve it as evaluated."""
    if model_spec is not None:
        from harness.models import resolve_model

        if Path(model_spec).suffix == ".gguf":
            raise DomainbenchError(f"serve --engine vllm: --model {model_spec} is a GGUF file (serve it with "
                                   "--engine llama.cpp)")
        return resolve_model(model_spec), model_spec, "auto"
    return _vllm_model_of_run(Path(run_dir), configuration)


def _vllm_model_of_run(run_dir: Path, configuration: str) -> tuple[Path, str, str]:
    """A run's configuration as one HF dir: its weights, its form, or for an adapter the run's merged form."""
    from run.artifacts import Artifact
    from run.spec import parse_configuration
    from tuning.forms import get_form

    config = parse_configuration(configuration)
    # A served model must be exactly what the run evaluated: vLLM loads plain Hugging Face dirs as they
    # are, not torchao/bitsandbytes quantizations nor llama.cpp's files (each form says which it is).
    unsupported = [form for form in config.forms if not get_form(form).vllm_servable]
    if config.rag or unsupported:
        raise DomainbenchError(f"serve --engine vllm: {configuration} cannot be served by vLLM as evaluated ("
                               + ("vLLM cannot put retrieval in front" if config.rag else
                                  f"the {unsupported[0]} form is not a plain Hugging Face model dir") + ")")
    resolved = read_run_yaml(run_dir)
    if configuration not in resolved["configurations"]:
        raise DomainbenchError(f"run {run_dir}: did not evaluate configuration {configuration!r}")
    forms = resolved.get("forms") or {}
    if not (config.forms or config.adapter):
        key, block = config.weights_key, resolved["weights"][config.weights_key]
    else:  # an adapter beside the weights is served as the run's merged form of it
        key = config.model_key if config.forms else f"{config.model_key}+merged"
        block = forms.get(key)
    if block is None:
        raise DomainbenchError(f"serve --engine vllm: {configuration} keeps its adapter beside the weights and the "
                               f"run has no {key} form; vLLM serves one merged model: add {key} to the run's "
                               "configurations (or serve with --engine in-process)")
    artifact = Artifact(key, Path(block["path"]), block["fingerprint"])
    check_unchanged(artifact, is_form=key in forms)
    dtype = (resolved.get("spec") or {}).get("dtype") or "auto"
    return artifact.path, f"{resolved['name']}/{configuration}", dtype


def vllm_command(executable: str, model_dir: Path, *, name: str, dtype: str, host: str, port: int,
                 api_key: str | None = None) -> list[str]:
    """The `vllm serve` command line for one model dir (run with os.execv: same PID, so it is stopped by PID)."""
    return [executable, "serve", str(model_dir), "--host", host, "--port", str(port), "--served-model-name", name,
            "--dtype", dtype, *(["--api-key", api_key] if api_key else [])]


def vllm_executable() -> str:
    """The `vllm` command of this environment; one line when vLLM or a CUDA GPU is missing."""
    import importlib.util
    import shutil
    import sys

    beside = Path(sys.executable).parent / "vllm"
    executable = str(beside) if beside.is_file() else shutil.which("vllm")
    if importlib.util.find_spec("vllm") is None or executable is None:
        raise DomainbenchError("serve --engine vllm: needs vLLM (pip install 'domainbench[vllm]' on a GPU machine)")
    import torch

    if not torch.cuda.is_available():
        raise DomainbenchError("serve --engine vllm: needs a CUDA GPU (torch sees none); on a CPU use --engine "
                               "in-process, or llama.cpp for a GGUF")
    return executable


def served_from_run(run_dir: Path, configuration: str, *, device: str | None = None) -> ServedModel:
    """The model (and retriever) a run evaluated as `configuration`, each artifact checked (run/configuration.py)."""
    from run.configuration import configuration_from_run

    opened = configuration_from_run(Path(run_dir), configuration, device=device)
    return ServedModel(opened.name, opened.engine, opened.augmenter, opened.about)
