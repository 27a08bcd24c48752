"""The gate's statistics on the man-pages suite's real per-example statistics (a `make demo` run).

For every task and every pair of configurations the run evaluated, A/A comparisons are made by
swapping each example's two rows at random: the two sides are then exchangeable by construction,
with the real agreement between configurations. One A/A replication judges the whole family (every
metric of every task, as `compare` would) and counts a false alarm when any test rejects. Printed:
the family-wise false-positive rate with and without Holm's correction, and the time one whole
family of tests takes against the old percentile-bootstrap loop it replaced (same run, same rows).

Run: `pytest benchmarks/bench_stats.py -s` after `make demo` (or set DOMAINBENCH_BENCH_RUN=RUN_DIR).
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import numpy as np
import pytest

from reports.summary import load_run_results
from stats.multiplicity import adjust
from stats.paired import paired_test
from stats.verdicts import ALPHA
from tasks.pairing import paired_rows

REPLICATIONS = 200
RUN_DIR = Path(os.environ.get("DOMAINBENCH_BENCH_RUN", "runs/demo"))


@pytest.fixture(scope="module")
def family():
    """[(label, rows_a, rows_b, statistic)]: every metric of every task for one pair of configurations per task."""
    if not (RUN_DIR / "results").is_dir():
        pytest.skip(f"{RUN_DIR}: no run to read (make demo, or DOMAINBENCH_BENCH_RUN=RUN_DIR)")
    by_task: dict[str, list] = {}
    for result in load_run_results(RUN_DIR):
        by_task.setdefault(result.task, []).append(result)
    tests = []
    for task, results in by_task.items():
        for a, b in itertools.islice(itertools.combinations(results, 2), 1):
            tests += [(f"{task}/{metric} ({a.configuration} vs {b.configuration})", rows_a, rows_b, statistic)
                      for metric, (rows_a, rows_b, statistic) in paired_rows(a, b).items()]
    return tests


def aa_split(rng, rows_a: np.ndarray, rows_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    swap = rng.random(len(rows_a)) < 0.5
    shape = (-1,) + (1,) * (rows_a.ndim - 1)
    return np.where(swap.reshape(shape), rows_b, rows_a), np.where(swap.reshape(shape), rows_a, rows_b)


def old_percentile_bootstrap(rows_a, rows_b, statistic, n_resamples: int = 1000, seed: int = 0) -> None:
    """The loop the gate ran before: one statistic call per resample and side."""
    indices = np.random.default_rng(seed).integers(0, len(rows_a), size=(n_resamples, len(rows_a)))
    np.array([statistic(rows_b[i]) - statistic(rows_a[i]) for i in indices])


def test_family_wise_false_positives_on_aa_splits(family):
    rng = np.random.default_rng(0)
    any_raw = any_holm = 0
    for replication in range(REPLICATIONS):
        p = []
        for _, rows_a, rows_b, statistic in family:
            split_a, split_b = aa_split(rng, np.asarray(rows_a), np.asarray(rows_b))
            p.append(paired_test(split_a, split_b, statistic, n_resamples=10, n_permutations=999,
                                 seed=replication).p_value)
        any_raw += min(p) <= ALPHA
        any_holm += min(adjust(p, "holm")) <= ALPHA
    raw, holm = any_raw / REPLICATIONS, any_holm / REPLICATIONS
    print(f"\n{len(family)} tests per comparison over {RUN_DIR}, {REPLICATIONS} A/A splits: family-wise "
          f"false-positive rate {raw:.3f} uncorrected, {holm:.3f} with Holm (α = {ALPHA})")
    assert holm <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / REPLICATIONS)


def test_time_for_the_whole_family(family):
    started = time.perf_counter()
    for _, rows_a, rows_b, statistic in family:
        paired_test(rows_a, rows_b, statistic)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    for _, rows_a, rows_b, statistic in family:
        old_percentile_bootstrap(np.asarray(rows_a), np.asarray(rows_b), statistic)
    old = time.perf_counter() - started
    print(f"\nwhole family of {len(family)} tests: {ours:.3f} s ({ours / len(family) * 1000:.1f} ms per comparison, "
          f"1,000 bootstrap resamples and up to 9,999 swaps each); the old per-resample loop: {old:.3f} s "
          f"(ratio {ours / old:.2f}x)")
