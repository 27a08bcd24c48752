"""`domainbench suite new` throughput on this machine's /usr/share/doc: documents/s and MB/s read.

/usr/share/doc is a real, messy collection (HTML, Markdown, text, gzip, PDF, hundreds of copies
of the same licences), so it exercises every step: extraction, the filters, both de-duplications,
the term list, the examples and the leakage guard. One build with every core; the counts after
each step are stored in extra_info beside the rates.

Run: `pytest benchmarks/bench_suite_new.py -s`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tasks.documents.build import SuiteOptions, build_documents_suite

DOCS = Path("/usr/share/doc")

pytestmark = pytest.mark.skipif(not DOCS.is_dir(), reason="no /usr/share/doc on this machine")


def test_usr_share_doc_build_rate(benchmark, tmp_path):
    workers = os.cpu_count() or 1
    options = SuiteOptions(name="usr-share-doc", docs=(DOCS,), workers=workers)
    started = time.perf_counter()
    stats = benchmark.pedantic(lambda: build_documents_suite(options, tmp_path / "suite"), rounds=1, iterations=1)
    seconds = time.perf_counter() - started
    rates = {"documents_per_second": stats.documents / seconds, "mb_per_second": stats.bytes_in / 1e6 / seconds}
    benchmark.extra_info.update({**rates, "workers": workers, "documents": stats.documents,
                                 "unreadable": len(stats.unreadable), "dropped": dict(stats.dropped),
                                 "exact_duplicates": stats.exact_duplicates, "near_duplicates": stats.near_duplicates,
                                 "kept": stats.kept, "splits": dict(stats.split_documents), "examples": stats.examples})
    print(f"\n{stats.documents} documents, {stats.bytes_in / 1e6:.1f} MB in {seconds:.1f} s with {workers} workers: "
          f"{rates['documents_per_second']:.1f} documents/s, {rates['mb_per_second']:.2f} MB/s; "
          f"{stats.kept} kept after {sum(stats.dropped.values())} drops, {stats.exact_duplicates} exact and "
          f"{stats.near_duplicates} near duplicates")
