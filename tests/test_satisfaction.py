"""Users' satisfaction: the exact interval and drop test in stats/, and `monitor`'s windows over a trace store."""

from __future__ import annotations

import time

import pytest
from scipy.stats import binom, binomtest

from serve.satisfaction import round_satisfaction, store_satisfaction
from serve.traces import Trace, TraceStore
from stats.intervals import clopper_pearson
from stats.proportions import share_drop_p_value

KEY = ("http://127.0.0.1:8000/v1", "/runs/base", "base")


@pytest.mark.parametrize(("successes", "n"), [(0, 5), (3, 10), (10, 10), (41, 97)])
def test_the_share_interval_is_scipys_exact_binomial_interval(successes, n):
    reference = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(successes, n) == pytest.approx((reference.low, reference.high), abs=1e-9)


@pytest.mark.parametrize(("n_before", "n_after", "share"), [(8, 8, 0.7), (12, 6, 0.5), (20, 20, 0.9)])
def test_the_drop_test_holds_its_level_at_small_n(n_before, n_after, share):
    """Exactly, over every outcome: with no drop, P(p ≤ 0.05) ≤ 0.05 (a z-test breaks this at these n)."""
    rejected = sum(binom.pmf(before, n_before, share) * binom.pmf(after, n_after, share)
                   for before in range(n_before + 1) for after in range(n_after + 1)
                   if share_drop_p_value(before, n_before, after, n_after) <= 0.05)
    assert rejected <= 0.05


def test_the_drop_test_is_one_sided_and_finds_a_real_drop():
    assert share_drop_p_value(18, 20, 6, 20) < 0.001
    assert share_drop_p_value(6, 20, 18, 20) > 0.99  # a rise is no drop
    assert share_drop_p_value(5, 5, 0, 0) == 1.0


def _rate(store: TraceStore, ups: int, downs: int, start: int) -> None:
    for k in range(start, start + ups + downs):
        store.record(Trace(f"cmpl-{k}", "completions", "tiny", None, 0.1, 1, 1, ["stop"], False))
        store.add_feedback(f"cmpl-{k}", "up" if k - start < ups else "down")


def _round(traces, db):
    found = round_satisfaction(traces, db, key=KEY, until=time.time())
    store_satisfaction(db, 1, found, key=KEY, traces=traces)
    return found


def test_each_round_rates_its_own_window_and_a_significant_drop_fails_it(tmp_path):
    store = TraceStore(tmp_path / "traces.sqlite")
    db = tmp_path / "monitor.sqlite"
    _rate(store, 18, 2, 0)
    first = _round(store.path, db)
    assert (first.window.satisfied, first.window.rated) == (18, 20) and first.ci == clopper_pearson(18, 20)
    assert first.against == {} and first.problems() == []  # nothing earlier to hold it to
    assert "satisfaction 90% (18 of 20 rated up)" in first.sentence()

    _rate(store, 17, 3, 100)
    steady = _round(store.path, db)
    assert (steady.window.satisfied, steady.window.rated) == (17, 20)  # only the ratings since the last round
    assert list(steady.against) == ["previous"] and steady.problems() == []

    _rate(store, 4, 16, 200)
    dropped = _round(store.path, db)
    assert list(dropped.against) == ["previous", "first"] and set(dropped.drops) == {"previous", "first"}
    (problem, *_), = [dropped.problems()]
    assert problem.startswith("satisfaction dropped: 20% (4 of 20 rated up) against the previous window's 85%")

    quiet = _round(store.path, db)
    assert quiet.window.rated == 0 and quiet.ci is None and quiet.problems() == []
    assert "no ratings" in quiet.sentence()


def test_the_monitor_publishes_the_windows_satisfaction_for_prometheus(tmp_path):
    from report_runs import qa_result

    from serve.metrics import MonitorMetrics
    from serve.monitor import MonitorRound

    store = TraceStore(tmp_path / "traces.sqlite")
    _rate(store, 3, 1, 0)
    metrics = MonitorMetrics(endpoint=KEY[0], baseline=KEY[1], configuration=KEY[2])
    assert "domainbench_monitor_satisfaction_rate NaN" in _exposition(metrics)  # nothing watched yet
    round_ = MonitorRound("now", [qa_result("served", "base", 4, n=4)], [], [], requests=4, errors=0,
                          errors_by_kind={}, latency_p50_seconds=0.1, latency_p95_seconds=0.2)
    metrics.observe(round_, [], round_satisfaction(store.path, tmp_path / "monitor.sqlite", key=KEY))
    text = _exposition(metrics)
    assert "domainbench_monitor_satisfaction_rate 0.75" in text and "domainbench_monitor_ratings 4.0" in text
    assert "domainbench_monitor_satisfaction_dropped 0.0" in text


def _exposition(metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


def test_a_window_counts_only_the_ratings_of_the_configuration_served(tmp_path):
    """After a redeploy into the same trace store, a late rating of the old model's answer is not the new one's."""
    from serve.traces import configuration_fingerprint

    old, new = (configuration_fingerprint({"fingerprint": digit * 64}) for digit in "ab")
    store = TraceStore(tmp_path / "traces.sqlite")
    for k, (served, rating) in enumerate([(old, "down")] * 5 + [(new, "up")] * 3 + [(new, "down")]):
        store.record(Trace(f"cmpl-{k}", "completions", "tiny", served, 0.1, 1, 1, ["stop"], False))
        store.add_feedback(f"cmpl-{k}", rating)
    db = tmp_path / "monitor.sqlite"
    found = round_satisfaction(store.path, db, key=KEY, until=time.time(), served=new)
    assert (found.window.satisfied, found.window.rated) == (3, 4)
    everything = round_satisfaction(store.path, db, key=KEY, until=time.time())
    assert (everything.window.satisfied, everything.window.rated) == (3, 9)
