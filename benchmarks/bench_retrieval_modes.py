"""Dense, lexical and hybrid retrieval on the man-pages suite's errno-qa test questions, same index, same run.

Each question's gold page is its `source.doc_id`; the knowledge base is the whole corpus (as every
profile now uses). Printed per mode: recall@4 and MRR with 95% bootstrap intervals, the paired test
of hybrid against dense (stats.paired_test), and milliseconds per query. The index is MiniLM over the
whole man-pages corpus, cached in DOMAINBENCH_CACHE (the first run embeds ~16k chunks).

Run: `pytest benchmarks/bench_retrieval_modes.py -s`.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.models import cache_dir
from retrieval.bm25 import RETRIEVAL_MODES, HybridRetriever
from retrieval.corpus import load_corpus
from retrieval.index import build_index
from retrieval.metrics import retrieval_scores
from retrieval.retriever import Retriever
from stats.intervals import bootstrap_ci
from stats.paired import paired_test
from stats.statistic import mean_of
from tasks.qa import rag_query
from tasks.rag_policy import exclusion
from tasks.suite import load_suite

K = 4


@pytest.fixture(scope="module")
def errno_qa():
    suite = load_suite("manpages")
    task = next(task for task in suite.tasks if task.name == "errno-qa")
    index_dir = cache_dir() / "indexes" / "manpages-minilm-l6-flat-whole-corpus"
    build_index(load_corpus(suite.corpus), index_dir, encoder="minilm-l6", kind="flat", source=str(suite.corpus))
    return task, Retriever.load(index_dir)


def test_recall_and_mrr_by_mode(errno_qa):
    task, dense = errno_qa
    examples = task.examples["test"]
    scores, seconds = {}, {}
    for mode in RETRIEVAL_MODES:
        retriever = HybridRetriever(dense, mode=mode)
        started = time.perf_counter()
        hits = [retriever.search(rag_query(e), K, exclude=exclusion(task, e)) for e in examples]
        seconds[mode] = (time.perf_counter() - started) / len(examples)
        scores[mode] = np.array([[(s := retrieval_scores([h.record() for h in found], e.get("source"), K))[f"recall@{K}"],
                                  s["mrr"]] for found, e in zip(hits, examples)])
    print(f"\nerrno-qa test, n = {len(examples)}, k = {K}, knowledge base: whole corpus ({len(dense.index.chunks)} chunks)")
    for mode in RETRIEVAL_MODES:
        recall, mrr = (bootstrap_ci(scores[mode], mean_of(column)) for column in (0, 1))
        print(f"  {mode:8s} recall@{K} {recall.value:.3f} [{recall.ci_low:.3f}, {recall.ci_high:.3f}]  "
              f"MRR {mrr.value:.3f} [{mrr.ci_low:.3f}, {mrr.ci_high:.3f}]  {seconds[mode] * 1000:.1f} ms/query")
    versus = paired_test(scores["dense"][:, 0], scores["hybrid"][:, 0], mean_of())
    print(f"  hybrid − dense recall@{K}: {versus.difference:+.3f} [{versus.ci_low:.3f}, {versus.ci_high:.3f}], "
          f"p = {versus.p_value:.3g} ({versus.n_differing} questions differ)")
