"""FAISS indexes over corpus chunks: build (or reuse), persist with a manifest, load, search.

An index directory holds `index.faiss`, `chunks.jsonl` (one chunk per vector, in vector order)
and the manifest (`harness/manifest.py`), which records everything the index was made from —
encoder spec and fingerprint, chunking settings, corpus fingerprint, index kind and parameters —
plus counts, timings and, for approximate kinds, recall@10 against the exact index. `build_index`
reuses a directory whose manifest has the same input hash and rebuilds it otherwise. A build is
written to a temporary directory beside the target and renamed into place, so a crash never
leaves a half-written index.

Vectors are unit length, so inner product is cosine similarity: every kind uses it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from harness.atomic import staged_dir
from harness.errors import DomainbenchError
from harness.manifest import (
    MANIFEST_FILE,
    code_versions,
    damaged_files,
    file_sha256,
    input_hash,
    read_manifest,
    reusable,
    write_manifest,
)
from retrieval.chunking import Chunk, ChunkingSettings, chunk_corpus
from retrieval.corpus import Document, corpus_fingerprint, json_record
from retrieval.embedding import (
    DEFAULT_ENCODER,
    Encoder,
    encoder_dtype,
    encoder_fingerprint,
    load_encoder,
)

INDEX_FILE, CHUNKS_FILE = "index.faiss", "chunks.jsonl"
MANIFEST_FORMAT = 1
DEFAULT_PARAMS = {
    "flat": {},
    "hnsw": {"m": 32, "ef_construction": 200, "ef_search": 128},
    "ivf": {"nlist": None, "nprobe": 32},  # nlist None: chosen from the collection size
}
INDEX_KINDS = tuple(DEFAULT_PARAMS)
RECALL_K, RECALL_QUERIES = 10, 1000


@dataclass
class LoadedIndex:
    """A FAISS index with its chunks (row i of the index is chunks[i]) and its manifest."""

    path: Path
    faiss_index: object = field(repr=False)
    chunks: list[Chunk] = field(repr=False)
    manifest: dict

    def search_vectors(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """For each query row, up to k (chunk row, score) pairs, best first."""
        k = min(k, len(self.chunks))
        scores, rows = self.faiss_index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        # Approximate kinds pad with row -1 when they find fewer than k neighbours.
        return [[(int(r), float(s)) for r, s in zip(row_ids, row_scores) if r >= 0]
                for row_ids, row_scores in zip(rows, scores)]


@dataclass
class BuildResult:
    manifest: dict
    reused: bool


def build_index(documents: list[Document], out_dir: str | Path, *, encoder: str | Encoder = DEFAULT_ENCODER,
                chunking: ChunkingSettings = ChunkingSettings(), kind: str = "flat", params: dict | None = None,
                device: str | None = None, batch_size: int = 64, source: str = "", force: bool = False) -> BuildResult:
    """Chunk, embed and index `documents` into `out_dir`, unless it already holds this very index.

    `encoder` is a spec (loaded only when a build is needed) or an already loaded Encoder.
    """
    out_dir = Path(out_dir)
    params = index_params(kind, params)
    spec, fingerprint, dtype = (encoder, encoder_fingerprint(encoder), encoder_dtype(device)) if isinstance(
        encoder, str) else (encoder.spec, encoder.fingerprint, encoder.dtype)
    # The dtype is an input: bf16 and fp32 vectors differ slightly, and queries must match the index.
    inputs = {"encoder": {"spec": spec, "fingerprint": fingerprint, "dtype": dtype},
              "chunking": chunking.as_dict(), "corpus": {"fingerprint": corpus_fingerprint(documents)},
              "index": {"kind": kind, "params": params},
              # The code that chunks, embeds and indexes: an upgrade builds the index again.
              "code": code_versions("faiss-cpu", "sentence-transformers", "torch", "transformers")}
    key = input_hash(inputs)
    existing = reusable(out_dir, key)
    # Same inputs in an older manifest format: `load_index` would refuse it, so build it again.
    if not force and existing and existing.get("format") == MANIFEST_FORMAT and _complete(out_dir):
        return BuildResult(existing, reused=True)

    started = time.perf_counter()
    loaded = load_encoder(encoder, device=device, dtype=dtype) if isinstance(encoder, str) else encoder
    _check_budget(chunking, loaded.max_tokens, spec)
    chunks = chunk_corpus(documents, loaded.tokenizer, chunking)
    encode_started = time.perf_counter()
    vectors = loaded.encode([chunk.passage() for chunk in chunks], batch_size=batch_size,
                            progress=f"Embedding {len(chunks)} chunks")
    encode_seconds = time.perf_counter() - encode_started
    faiss_index, params = build_faiss_index(vectors, kind, params)
    recall = approximate_recall(vectors, faiss_index) if kind != "flat" else None
    manifest = {
        "format": MANIFEST_FORMAT, "input_hash": key, **inputs,
        "corpus": {**inputs["corpus"], "source": source, "documents": len(documents)},
        "encoder": {**inputs["encoder"], "dimension": int(vectors.shape[1]), "max_tokens": loaded.max_tokens},
        "index": {"kind": kind, "params": params, "metric": "inner_product"},
        "counts": {"documents": len(documents), "chunks": len(chunks)},
        "encode_seconds": round(encode_seconds, 3),
        "chunks_per_second": round(len(chunks) / max(encode_seconds, 1e-9), 1),
        "recall_vs_exact": recall,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    manifest["build_seconds"] = round(time.perf_counter() - started, 3)
    _write_index_dir(out_dir, faiss_index, chunks, manifest)
    return BuildResult(manifest, reused=False)


def index_params(kind: str, params: dict | None) -> dict:
    """The kind's default parameters overridden by `params`; unknown kinds or keys are errors."""
    if kind not in DEFAULT_PARAMS:
        raise DomainbenchError(f"index kind {kind!r}: expected one of {', '.join(INDEX_KINDS)}")
    unknown = set(params or {}) - set(DEFAULT_PARAMS[kind])
    if unknown:
        allowed = ", ".join(DEFAULT_PARAMS[kind]) or "none"
        raise DomainbenchError(f"index kind {kind}: unknown parameter {', '.join(sorted(unknown))} (allowed: {allowed})")
    return {**DEFAULT_PARAMS[kind], **(params or {})}


def build_faiss_index(vectors: np.ndarray, kind: str = "flat", params: dict | None = None):
    """An inner-product FAISS index of `kind` holding `vectors`, and its effective parameters."""
    import faiss

    params = index_params(kind, params)
    dimension = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, params["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
    else:
        params["nlist"] = params["nlist"] or _default_nlist(len(vectors))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, params["nlist"], faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    index.add(vectors)
    _apply_search_params(index, kind, params)
    return index, params


def approximate_recall(vectors: np.ndarray, index, *, k: int = RECALL_K, n_queries: int = RECALL_QUERIES,
                       seed: int = 0) -> dict:
    """recall@k of `index` against exact search, querying with a sample of the indexed vectors.

    Each query's own row is left out of both result lists: it is trivially found and would
    inflate the figure by 1/k.
    """
    import faiss

    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    rows = np.random.default_rng(seed).choice(len(vectors), size=min(n_queries, len(vectors)), replace=False)
    depth = min(k + 1, len(vectors))
    _, truth = exact.search(vectors[rows], depth)
    _, found = index.search(vectors[rows], depth)
    hits = total = 0
    for row, true_ids, found_ids in zip(rows, truth, found):
        expected = [i for i in true_ids if i != row][:k]
        hits += len(set(expected) & {i for i in found_ids if i != row})
        total += len(expected)
    return {"k": k, "queries": len(rows), "recall": round(hits / total, 4) if total else 1.0}


def load_index(index_dir: str | Path) -> LoadedIndex:
    """Load an index directory, checking that its files are whole and agree with each other."""
    import faiss

    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise DomainbenchError(f"{index_dir}: no such index directory (build one with `domainbench index build`)")
    manifest = _index_manifest(index_dir)
    index_file = index_dir / INDEX_FILE
    if not index_file.is_file():
        raise DomainbenchError(f"{index_file}: missing; rebuild the index")
    # The checksums catch damage that FAISS would read without complaint (or crash on), and chunk
    # texts altered after the build, which would be retrieved as if the corpus said them.
    damage = damaged_files(index_dir, manifest)
    if damage:
        raise DomainbenchError(f"{index_dir / damage[0]}; rebuild the index")
    try:
        faiss_index = faiss.read_index(str(index_file))
    except RuntimeError as exc:
        raise DomainbenchError(f"{index_file}: not a readable FAISS index: {str(exc).splitlines()[0]}") from exc
    chunks = _read_chunks(index_dir / CHUNKS_FILE)
    if not faiss_index.ntotal == len(chunks) == manifest["counts"]["chunks"]:
        raise DomainbenchError(f"{index_dir}: {INDEX_FILE} holds {faiss_index.ntotal} vectors but {CHUNKS_FILE} "
                               f"{len(chunks)} chunks; rebuild the index")
    _apply_search_params(faiss_index, manifest["index"]["kind"], manifest["index"]["params"])
    return LoadedIndex(path=index_dir, faiss_index=faiss_index, chunks=chunks, manifest=manifest)


def _index_manifest(index_dir: Path) -> dict:
    try:
        manifest = read_manifest(index_dir)
    except DomainbenchError as exc:
        raise DomainbenchError(f"{exc}; rebuild the index") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise DomainbenchError(f"{index_dir / MANIFEST_FILE}: format: expected manifest format {MANIFEST_FORMAT}; "
                               "rebuild the index")
    return manifest


def _write_index_dir(out_dir: Path, faiss_index, chunks: list[Chunk], manifest: dict) -> None:
    import faiss

    with staged_dir(out_dir) as staging:
        faiss.write_index(faiss_index, str(staging / INDEX_FILE))
        manifest["index"]["file_sha256"] = file_sha256(staging / INDEX_FILE)
        manifest["index"]["file_bytes"] = (staging / INDEX_FILE).stat().st_size
        with open(staging / CHUNKS_FILE, "w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(json.dumps(chunk.as_dict(), ensure_ascii=False) + "\n")
        write_manifest(staging, manifest)


def _read_chunks(path: Path) -> list[Chunk]:
    if not path.is_file():
        raise DomainbenchError(f"{path}: missing; rebuild the index")
    chunks = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                chunks.append(Chunk(**json_record(line, path, number)))
            except TypeError as exc:
                raise DomainbenchError(f"{path}:{number}: chunk: unexpected fields ({exc}); rebuild the index") from exc
    return chunks


def _complete(index_dir: Path) -> bool:
    return all((index_dir / name).is_file() for name in (INDEX_FILE, CHUNKS_FILE, MANIFEST_FILE))


def _apply_search_params(index, kind: str, params: dict) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = params["ef_search"]
    elif kind == "ivf":
        index.nprobe = min(params["nprobe"], params["nlist"])


def _default_nlist(n_vectors: int) -> int:
    # ~4·sqrt(n) lists is FAISS's usual advice; k-means wants >= 39 training points per list.
    return max(1, min(int(4 * n_vectors ** 0.5), n_vectors // 39))


def _check_budget(chunking: ChunkingSettings, encoder_max_tokens: int, encoder: str) -> None:
    # The passage heading ("rename(2) — ERRORS") and the special tokens need a little room too.
    if chunking.max_tokens > encoder_max_tokens - 16:
        raise DomainbenchError(f"chunk size {chunking.max_tokens}: encoder {encoder} reads at most "
                               f"{encoder_max_tokens} tokens; use at most {encoder_max_tokens - 16}")
