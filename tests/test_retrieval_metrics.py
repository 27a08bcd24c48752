"""Retrieval metrics on hand-checked rankings, and nDCG against scikit-learn's ndcg_score."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.metrics import document_ranking, gold_documents, retrieval_scores
from tasks.retrieval_metrics import aggregate_retrieval


def _retrieved(*doc_ids: str) -> list[dict]:
    return [{"chunk_id": f"{doc_id}#{i}", "doc_id": doc_id, "section": "ERRORS", "score": 1 - i / 100}
            for i, doc_id in enumerate(doc_ids)]


def test_gold_first_scores_one():
    scores = retrieval_scores(_retrieved("rename.2", "link.2", "unlink.2"), {"doc_id": "rename.2"}, k=3)
    assert scores == {"recall@3": 1.0, "mrr": 1.0, "ndcg@3": 1.0,
                      "retrieved_recall@3": 1.0, "retrieved_mrr": 1.0, "retrieved_ndcg@3": 1.0}


def test_gold_third_document():
    scores = retrieval_scores(_retrieved("a", "b", "rename.2"), {"doc_id": "rename.2"}, k=3)
    assert scores["recall@3"] == 1.0
    assert scores["mrr"] == pytest.approx(1 / 3)
    assert scores["ndcg@3"] == pytest.approx(1 / math.log2(4))  # 0.5


def test_gold_missing_scores_zero():
    assert retrieval_scores(_retrieved("a", "b"), {"doc_id": "rename.2"}, k=2) == {
        "recall@2": 0.0, "mrr": 0.0, "ndcg@2": 0.0, "retrieved_recall@2": 0.0, "retrieved_mrr": 0.0,
        "retrieved_ndcg@2": 0.0}


def test_gold_below_k_does_not_count():
    scores = retrieval_scores(_retrieved("a", "b", "c", "rename.2"), {"doc_id": "rename.2"}, k=3)
    assert {name: scores[name] for name in ("recall@3", "mrr", "ndcg@3", "retrieved_recall@3")} == {
        "recall@3": 0.0, "mrr": 0.0, "ndcg@3": 0.0, "retrieved_recall@3": 0.0}


def test_ranks_count_documents_not_chunks():
    # Three chunks of page a, then the gold page: the gold page is the second *document*.
    retrieved = _retrieved("a", "a", "a", "rename.2")
    assert document_ranking(retrieved, k=4) == ["a", "rename.2"]
    scores = retrieval_scores(retrieved, {"doc_id": "rename.2"}, k=4)
    assert scores["mrr"] == 0.5 and scores["ndcg@4"] == pytest.approx(1 / math.log2(3))


def test_several_gold_documents():
    scores = retrieval_scores(_retrieved("x", "g1", "y", "g2"), {"doc_ids": ["g1", "g2", "g3"]}, k=4)
    assert scores["recall@4"] == pytest.approx(2 / 3)
    assert scores["mrr"] == 0.5
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert scores["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)


def test_examples_without_a_source_have_no_scores():
    assert retrieval_scores(_retrieved("a"), None, k=1) == {}
    assert retrieval_scores(_retrieved("a"), {"section": "ERRORS"}, k=1) == {}
    assert gold_documents({"doc_id": "a"}) == {"a"}


@settings(deadline=None)  # the first example pays for importing sklearn
@given(st.permutations("abcdefgh"), st.integers(min_value=1, max_value=8),
       st.sets(st.sampled_from("abcdefgh"), min_size=1, max_size=3), st.data())
def test_ndcg_matches_sklearn(order, n_retrieved, gold, data):
    from sklearn.metrics import ndcg_score

    k = data.draw(st.integers(min_value=1, max_value=n_retrieved))
    retrieved = _retrieved(*order[:n_retrieved])
    # sklearn scores every candidate: retrieved documents by rank, the rest far below. With
    # k <= documents retrieved, its cut-off never reaches the (tied) unretrieved ones.
    relevance = np.array([[float(doc_id in gold) for doc_id in order]])
    scores = np.array([[float(len(order) - i) if i < n_retrieved else -100.0 for i in range(len(order))]])
    expected = ndcg_score(relevance, scores, k=k)
    assert retrieval_scores(retrieved, {"doc_ids": sorted(gold)}, k=k)[f"ndcg@{k}"] == pytest.approx(expected)


def test_aggregate_is_the_mean_with_an_interval_over_examples_with_scores():
    per_example = [{"recall@1": 1.0, "mrr": 1.0}, {"recall@1": 0.0, "mrr": 0.5}, {}, {"recall@1": 1.0, "mrr": 0.25}]
    metrics = aggregate_retrieval(per_example)
    assert metrics["recall@1"].value == pytest.approx(2 / 3) and metrics["recall@1"].n == 3
    assert metrics["mrr"].value == pytest.approx(1.75 / 3)
    assert metrics["mrr"].ci_low <= metrics["mrr"].value <= metrics["mrr"].ci_high


def test_a_passage_the_budget_left_out_is_not_counted_as_retrieved_in_the_prompt():
    from retrieval.metrics import retrieval_scores

    chunks = [{"chunk_id": f"{doc}#0", "doc_id": doc, "prompt_tokens": tokens}
              for doc, tokens in (("a", 40), ("b", 40), ("c", 12), ("gold", 0))]
    scores = retrieval_scores(chunks, {"doc_id": "gold"}, 4)
    assert scores["recall@4"] == 0 and scores["mrr"] == 0 and scores["ndcg@4"] == 0
    assert scores["retrieved_recall@4"] == 1 and scores["retrieved_mrr"] == 0.25
    chunks[3]["prompt_tokens"] = 5  # cut short, but in the prompt
    assert retrieval_scores(chunks, {"doc_id": "gold"}, 4)["recall@4"] == 1
