"""BM25 against its formula, the score mix by hand, and the hybrid retriever."""

from __future__ import annotations

import math

import pytest
from retrieval_fakes import fake_encoder, minilm_tokenizer, sample_documents

from retrieval.bm25 import BM25, HybridRetriever, bm25_terms, score_mix
from retrieval.index import build_index

TEXTS = ["EXDEV oldpath and newpath are not on the same mounted filesystem",
         "EISDIR newpath is an existing directory",
         "the file is on a read-only filesystem filesystem",
         "map files or devices into memory"]


def _bm25_reference(texts: list[str], query: str, k1: float = 1.5, b: float = 0.75) -> list[float]:
    documents = [bm25_terms(text) for text in texts]
    average = sum(map(len, documents)) / len(documents)
    scores = []
    for words in documents:
        score = 0.0
        for term in bm25_terms(query):
            df = sum(term in d for d in documents)
            tf = words.count(term)
            idf = math.log(1 + (len(documents) - df + 0.5) / (df + 0.5))
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(words) / average))
        scores.append(score)
    return scores


@pytest.mark.parametrize("query", ["EXDEV", "same filesystem", "newpath directory memory", "nothing matches"])
def test_bm25_scores_equal_the_formula(query):
    expected = _bm25_reference(TEXTS, query)
    ranked = BM25(TEXTS).top_k(query, k=4)
    assert [row for row, _ in ranked] == sorted((i for i in range(4) if expected[i] > 0), key=lambda i: -expected[i])
    for row, score in ranked:
        assert score == pytest.approx(expected[row])


def test_identifiers_are_terms():
    assert bm25_terms("O_CREAT and renameat2() fail with EXDEV") == ["o_creat", "and", "renameat2", "fail", "with",
                                                                     "exdev"]


def test_score_mix_by_hand():
    dense = [(1, 0.9), (2, 0.5), (3, 0.1)]          # normalised: 1.0, 0.5, 0.0
    lexical = [(3, 12.0), (1, 4.0)]                 # normalised: 1.0, 0.0
    fused = score_mix(dense, lexical, k=3)
    assert fused == [(1, pytest.approx(0.5)), (3, pytest.approx(0.5)), (2, pytest.approx(0.25))]
    assert score_mix(dense, [], k=1) == [(1, pytest.approx(0.5))]


def test_a_decisive_lexical_hit_beats_a_crowd_of_dense_look_alikes():
    """The docsite failure of rank fusion: the exact code is BM25's clear first, dense ranks it tenth."""
    dense = ([(row, 0.80 - row * 0.001) for row in range(10)] + [(42, 0.789)]
             + [(100 + row, 0.6 - row * 0.0025) for row in range(40)])  # the rest of a depth-50 ranking
    lexical = [(42, 9.0)] + [(row, 1.0) for row in range(5)]
    assert score_mix(dense, lexical, k=1)[0][0] == 42


def test_hybrid_retriever_finds_the_planted_document(tmp_path):
    encoder = fake_encoder(minilm_tokenizer())
    build_index(sample_documents(), tmp_path / "index", encoder=encoder)
    hybrid = HybridRetriever.load(tmp_path / "index", encoder=encoder)
    hits = hybrid.search("Which error means not on the same mounted filesystem? EXDEV", k=3)
    assert (hits[0].doc_id, hits[0].section) == ("rename.2", "ERRORS")
    assert hits[0].score == pytest.approx(1.0)  # first in both rankings
    assert hybrid.search_many(["chdir"], k=2) == [hybrid.search("chdir", k=2)]


def test_each_mode_uses_its_rankings_and_an_unknown_mode_is_refused(tmp_path):
    encoder = fake_encoder(minilm_tokenizer())
    build_index(sample_documents(), tmp_path / "index", encoder=encoder)
    query = "EXDEV"
    lexical = HybridRetriever.load(tmp_path / "index", encoder=encoder, mode="lexical")
    dense = HybridRetriever.load(tmp_path / "index", encoder=encoder, mode="dense")
    bm25 = lexical.lexical.top_k(query, 3)
    assert [hit.chunk_id for hit in lexical.search(query, 3)] == [lexical.index.chunks[row].chunk_id for row, _ in bm25]
    assert dense.lexical is None
    assert [hit.score for hit in dense.search(query, 3)] == pytest.approx([hit.score for hit in dense.dense.search(query, 3)])
    with pytest.raises(ValueError, match="retrieval mode"):
        HybridRetriever.load(tmp_path / "index", encoder=encoder, mode="sparse")


def test_hybrid_search_honours_the_exclusion_and_still_returns_k(tmp_path):
    from retrieval.matching import Exclusion

    encoder = fake_encoder(minilm_tokenizer())
    build_index(sample_documents(), tmp_path / "index", encoder=encoder)
    from retrieval.retriever import Retriever

    hybrid = HybridRetriever(Retriever.load(tmp_path / "index", encoder=encoder), depth=1)
    query = "Which error means not on the same mounted filesystem? EXDEV"
    hits = hybrid.search(query, k=3, exclude=Exclusion(doc_ids=frozenset({"rename.2"})))
    assert len(hits) == 3 and all(hit.doc_id != "rename.2" for hit in hits)
