"""Lexical retrieval (Okapi BM25) and its fusion with dense retrieval by a normalised score mix.

Man-page questions name exact identifiers — EXDEV, O_CREAT, renameat2() — which a small sentence
encoder blurs; BM25 matches them exactly. The hybrid retriever mixes both systems' scores, each
min–max normalised over its own top candidates: score(d) = ½·bm25'(d) + ½·cosine'(d), 0 on a side
that did not rank d. Measured against reciprocal-rank fusion (c = 60) on the same indexes
(2026-12-03, MiniLM, k = 4): man-pages errno-qa, n = 712, recall@4 0.994 against 0.993 and rank-1
0.955 against 0.947; a generated documentation site's 20 error-code questions (tests/docsite.py),
rank-1 0.95 against 0.35 — ranks alone let a dense ranking of look-alike pages outvote BM25's exact
hit on the code, where the mix keeps how decisive that hit is.
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
LEXICAL_WEIGHT = 0.5
# How deep each ranking is read before fusion: enough that a chunk ranked modestly by both
# systems can still win, and that the normalisation's minimum is a typical non-answer.
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


def score_mix(dense: list[tuple[int, float]], lexical: list[tuple[int, float]], k: int, *,
              lexical_weight: float = LEXICAL_WEIGHT) -> list[tuple[int, float]]:
    """The k items with the highest weighted sum of min–max normalised scores (0 where a side did not rank one)."""
    dense_scores, lexical_scores = _normalised(dense), _normalised(lexical)
    fused = {item: lexical_weight * lexical_scores.get(item, 0.0) + (1 - lexical_weight) * dense_scores.get(item, 0.0)
             for item in dense_scores.keys() | lexical_scores.keys()}
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))[:k]


def _normalised(ranked: list[tuple[int, float]]) -> dict[int, float]:
    """Scores mapped onto [0, 1] by the list's own minimum and maximum (all 1 when they are equal)."""
    if not ranked:
        return {}
    scores = [score for _, score in ranked]
    low, high = min(scores), max(scores)
    return {item: (score - low) / (high - low) if high > low else 1.0 for item, score in ranked}


RETRIEVAL_MODES = ("hybrid", "dense", "lexical")
DEFAULT_MODE = "hybrid"


class HybridRetriever:
    """Dense + BM25 retrieval fused by `score_mix`; a Hit's score is its fused score.

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
        return [self.dense.hit(row, score) for row, score in score_mix(dense, lexical, 2 * depth)]
