"""Retrieval metrics against an example's gold source document: recall@k, MRR, nDCG@k.

They are judged at the document level: the retrieved chunks, best first, become a ranking of
distinct documents (each at the rank of its best chunk), and a document is relevant when it is
the example's `source.doc_id` (or one of `source.doc_ids`). Relevance is binary, so

- recall@k  = relevant documents among the top k chunks / relevant documents;
- MRR       = 1 / rank of the first relevant document (0 when none was retrieved);
- nDCG@k    = sum over relevant documents at rank r of 1/log2(r + 1), divided by the same sum for
              the ideal ranking (all relevant documents first).

Ranks count documents, not chunks, so three chunks of one wrong page push the right page down by
one place only. The metrics count only the chunks that reached the prompt (`prompt_tokens` > 0): a
gold page retrieved at rank 4 that the context budget left out helped nobody. The same metrics
over everything retrieved, budget or not, are reported beside them as `retrieved_recall@k`,
`retrieved_mrr` and `retrieved_ndcg@k`. Per-example scores go in the result file beside the task's own scores; a bad
answer with recall 1 is a reading failure, one with recall 0 a retrieval failure.
"""

from __future__ import annotations

import math


def gold_documents(source: dict | None) -> set[str]:
    """The relevant document ids of an example's `source` (empty when it names none)."""
    if not isinstance(source, dict):
        return set()
    ids = source.get("doc_ids") or ([source["doc_id"]] if source.get("doc_id") else [])
    return {str(doc_id) for doc_id in ids}


def document_ranking(retrieved: list[dict], k: int) -> list[str]:
    """Distinct document ids of the first k retrieved chunks, in order of their best chunk."""
    ranking: list[str] = []
    for record in retrieved[:k]:
        if record["doc_id"] not in ranking:
            ranking.append(record["doc_id"])
    return ranking


RETRIEVED_PREFIX = "retrieved_"


def retrieval_scores(retrieved: list[dict], source: dict | None, k: int) -> dict[str, float]:
    """recall@k, mrr and ndcg@k of one example over the chunks in its prompt, then the `retrieved_` ones
    over every chunk retrieved; {} when the example names no source document."""
    gold = gold_documents(source)
    if not gold:
        return {}
    in_prompt = [record for record in retrieved[:k] if in_the_prompt(record)]
    return {**_ranking_scores(in_prompt, gold, k),
            **{RETRIEVED_PREFIX + name: value for name, value in _ranking_scores(retrieved, gold, k).items()}}


def in_the_prompt(record: dict) -> bool:
    """Whether any of a retrieved chunk reached the prompt (records from before the budget was recorded: yes)."""
    return record.get("prompt_tokens", 1) > 0


def _ranking_scores(retrieved: list[dict], gold: set[str], k: int) -> dict[str, float]:
    ranking = document_ranking(retrieved, k)
    relevant_ranks = [rank for rank, doc_id in enumerate(ranking, start=1) if doc_id in gold]
    dcg = sum(1 / math.log2(rank + 1) for rank in relevant_ranks)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return {f"recall@{k}": len(relevant_ranks) / len(gold),
            "mrr": 1 / relevant_ranks[0] if relevant_ranks else 0.0,
            f"ndcg@{k}": dcg / ideal}


def judged_retrieval_gold(source: dict | None, k: int) -> dict | None:
    """What a result file keeps to judge an example's retrieval later: gold documents and k."""
    gold = gold_documents(source)
    return {"gold": sorted(gold), "k": k} if gold else None
