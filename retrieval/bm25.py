"""Lexical retrieval (Okapi BM25) and its fusion with dense retrieval by reciprocal rank.

Man-page questions name exact identifiers — EXDEV, O_CREAT, renameat2() — which a small sentence
encoder blurs; BM25 matches them exactly. The hybrid retriever fuses both rankings with
reciprocal-rank fusion (Cormack et al., 2009): score(d) = sum over rankings of 1 / (60 + rank(d)),
which needs no score calibration between the two systems.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import sparse

from retrieval.matching import Exclusion
from retrieval.retriever import Hit, Retriever

BM25_K1, BM25_B = 1.5, 0.75
RRF_C = 60
# How deep each ranking is read before fusion: enough that a chunk ranked modestly by both
# systems can still win.
FUSION_DEPTH = 50
_WORD = re.compile(r"[a-z0-9_]+")


def bm25_terms(text: str) -> list[str]:
    """Lowercase identifier-like words: `EXDEV`, `o_creat`, `renameat2` survive whole."""
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 over a list of texts; scores are precomputed per (text, term) in a sparse matrix."""

    def __init__(self, texts: list[str], *, k1: float = BM25_K1, b: float = BM25_B):
        counts = [Counter(bm25_terms(text)) for text in texts]
        self.vocabulary = {term: i for i, term in enumerate(sorted({t for c in counts for t in c}))}
        rows = np.repeat(np.arange(len(counts)), [len(c) for c in counts])
        columns = np.array([self.vocabulary[t] for c in counts for t in c], dtype=np.int64)
        tf = np.array([n for c in counts for n in c.values()], dtype=np.float64)
        lengths = np.array([sum(c.values()) for c in counts], dtype=np.float64)
        df = np.bincount(columns, minlength=len(self.vocabulary))
        idf = np.log1p((len(texts) - df + 0.5) / (df + 0.5))  # Lucene's form: never negative
        norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
        weights = idf[columns] * tf * (k1 + 1) / (tf + norm[rows])
        self.matrix = sparse.csc_matrix((weights, (rows, columns)), shape=(len(texts), len(self.vocabulary)))

    def top_k(self, query: str, k: int) -> list[tuple[int, float]]:
        """Up to k (row, score) pairs with a positive score, best first."""
        columns = [self.vocabulary[t] for t in bm25_terms(query) if t in self.vocabulary]
        if not columns:
            return []
        scores = np.asarray(self.matrix[:, columns].sum(axis=1)).ravel()
        top = np.argsort(-scores, kind="stable")[:k]
        return [(int(row), float(scores[row])) for row in top if scores[row] > 0]


def reciprocal_rank_fusion(rankings: list[list[int]], k: int, *, c: int = RRF_C) -> list[tuple[int, float]]:
    """The k items with the highest sum of 1/(c + rank) over `rankings` (ranks from 1)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (c + rank)
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))[:k]


RETRIEVAL_MODES = ("hybrid", "dense", "lexical")
DEFAULT_MODE = "hybrid"


class HybridRetriever:
    """Dense + BM25 retrieval fused by reciprocal rank; a Hit's score is its fused RRF score.

    `mode` picks the rankings: `hybrid` fuses both, `dense` and `lexical` use one (a lexical Hit's
    score is its BM25 score, a dense one's its cosine similarity).
    """

    def __init__(self, dense: Retriever, *, mode: str = DEFAULT_MODE, depth: int = FUSION_DEPTH):
        if mode not in RETRIEVAL_MODES:
            raise ValueError(f"unknown retrieval mode {mode!r} (expected one of {', '.join(RETRIEVAL_MODES)})")
        self.dense = dense
        self.index = dense.index
        self.mode = mode
        self.depth = depth
        self.lexical = BM25([chunk.passage() for chunk in dense.index.chunks]) if mode != "dense" else None

    @classmethod
    def load(cls, index_dir: str | Path, *, mode: str = DEFAULT_MODE, **kwargs) -> HybridRetriever:
        """A dense Retriever.load(index_dir, **kwargs) with a BM25 index over the same chunks."""
        return cls(Retriever.load(index_dir, **kwargs), mode=mode)

    def search(self, query: str, k: int = 5, *, exclude: Exclusion | None = None) -> list[Hit]:
        """The k best chunks for `query`, none excluded by `exclude` (the rankings are read deeper until k are allowed)."""
        depth = max(self.depth, k)
        while True:
            ranked = self._ranked(query, depth)
            allowed = [hit for hit in ranked if exclude is None or not exclude.excludes(hit)]
            if len(allowed) >= k or depth >= len(self.index.chunks):
                return allowed[:k]
            depth *= 4

    def search_many(self, queries: list[str], k: int = 5) -> list[list[Hit]]:
        return [self.search(query, k) for query in queries]

    def _ranked(self, query: str, depth: int) -> list[Hit]:
        """Every chunk either ranking places in its top `depth`, fused, best first."""
        dense = self.dense.search_rows([query], depth)[0] if self.mode != "lexical" else []
        lexical = self.lexical.top_k(query, depth) if self.lexical is not None else []
        if self.mode != "hybrid":
            return [self.dense.hit(row, score) for row, score in (dense or lexical)]
        fused = reciprocal_rank_fusion([[row for row, _ in dense], [row for row, _ in lexical]], 2 * depth)
        return [self.dense.hit(row, score) for row, score in fused]
