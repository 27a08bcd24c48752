"""Retrieval cost: MiniLM encoding throughput, and FAISS query latency (p50/p99) per index kind.

Run: `pytest benchmarks/bench_retrieval.py --benchmark-only -s`. Latency is measured at the size of
the man-pages index (16,487 chunks at 200 tokens / 32 overlap) and at 100k vectors; both use
random unit vectors of MiniLM's 384 dimensions, whose lack of structure is the worst case for the
approximate kinds — their recall against exact search is printed beside their latency (the
recall on real embeddings is in each index's manifest).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from retrieval.index import approximate_recall, build_faiss_index

DIMENSION = 384
MANPAGES_CHUNKS = 16_487
SIZES = {"manpages": MANPAGES_CHUNKS, "100k": 100_000}
N_QUERIES = 500
K = 5


def unit_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module", params=list(SIZES))
def collection(request):
    return request.param, unit_vectors(SIZES[request.param], seed=0)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_query_latency(benchmark, collection, kind):
    size_name, vectors = collection
    started = time.perf_counter()
    index, params = build_faiss_index(vectors, kind)
    build_seconds = time.perf_counter() - started
    queries = unit_vectors(N_QUERIES, seed=1)
    latencies = []
    for query in queries:
        start = time.perf_counter()
        index.search(query[None, :], K)
        latencies.append(time.perf_counter() - start)
    p50, p99 = (float(np.percentile(latencies, q)) * 1e3 for q in (50, 99))
    recall = approximate_recall(vectors, index, n_queries=300)["recall"] if kind != "flat" else 1.0
    benchmark.extra_info.update({"vectors": len(vectors), "params": params, "p50_ms": p50, "p99_ms": p99,
                                 "recall_at_10": recall, "build_seconds": build_seconds})
    benchmark.pedantic(lambda: index.search(queries[:1], K), rounds=200, iterations=1)
    print(f"\n{kind:5s} {size_name:8s} ({len(vectors)} vectors) {params}: p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
          f"recall@10 {recall:.3f}  build {build_seconds:.1f} s")


@pytest.fixture(scope="module")
def minilm():
    from retrieval.embedding import load_encoder

    return load_encoder("minilm-l6", device="cpu")


def test_encode_throughput(benchmark, minilm):
    from retrieval.chunking import ChunkingSettings, chunk_corpus
    from retrieval.corpus import load_corpus
    from tasks.suite import suite_corpus_path

    documents = load_corpus(suite_corpus_path("manpages"))[:40]
    passages = [chunk.passage() for chunk in chunk_corpus(documents, minilm.tokenizer, ChunkingSettings())][:512]
    seconds = benchmark.pedantic(lambda: _timed(lambda: minilm.encode(passages)), rounds=2, iterations=1)
    rate = len(passages) / benchmark.stats.stats.min
    benchmark.extra_info.update({"chunks": len(passages), "chunks_per_second": rate, "last_seconds": seconds})
    print(f"\nMiniLM encode: {len(passages)} man-page chunks, {rate:.1f} chunks/s (CPU)")


def test_query_encode_latency(benchmark, minilm):
    question = "Which error does rename() return when oldpath and newpath are not on the same mounted filesystem?"
    minilm.encode([question])
    latencies = [_timed(lambda: minilm.encode([question])) for _ in range(50)]
    p50, p99 = (float(np.percentile(latencies, q)) * 1e3 for q in (50, 99))
    benchmark.extra_info.update({"p50_ms": p50, "p99_ms": p99})
    benchmark.pedantic(lambda: minilm.encode([question]), rounds=20, iterations=1)
    print(f"\nMiniLM query encode: p50 {p50:.1f} ms  p99 {p99:.1f} ms")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
