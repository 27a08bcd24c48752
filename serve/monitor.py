"""Canary monitoring: is the endpoint in production still the model the baseline run approved?

Each round replays a seeded sample of the examples a baseline run scored for one configuration
through the endpoint — the same examples, few-shot exemplars, split and settings the baseline
used — and gates the served scores against the baseline's on those very examples with the paired
test `compare` uses, the round's metrics judged as one family (`reports.changes.decide_family`). A round also fails when its request error
rate or p95 latency passes a threshold. Rounds go to a SQLite time series; the first round for an
(endpoint, baseline, configuration) is the parity check: served against offline scores.

The sample is drawn from the baseline's example ids, keyed by seed and id (as `eval --limit`
draws), so every round with one seed replays the same examples and rounds are comparable. Its
default size comes from the smallest drop the user wants detected (`canary_size`), and every round
states the drop its n could detect (`detectable_drops`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engines.openai_api import OpenAIEngine
from harness.errors import DomainbenchError
from reports.changes import GateSettings, MetricChange, decide_family, metric_changes
from reports.schema import ResultFile, result_file
from reports.summary import load_run_results
from stats.descriptive import percentile
from stats.power import detectable_at, examples_needed, spread_from_interval
from tasks.evaluate import evaluate_task
from tasks.pairing import metric_scale, primary_metric
from tasks.spec import TaskSpec
from tasks.suite import Suite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY, started TEXT NOT NULL, endpoint TEXT NOT NULL, served_model TEXT,
    baseline TEXT NOT NULL, configuration TEXT NOT NULL, sample INTEGER, seed INTEGER,
    requests INTEGER, errors INTEGER, error_rate REAL, errors_by_kind TEXT,
    latency_p50_seconds REAL, latency_p95_seconds REAL, parity INTEGER, passed INTEGER, problems TEXT);
CREATE TABLE IF NOT EXISTS round_metrics (
    round_id INTEGER NOT NULL REFERENCES rounds(id), task TEXT NOT NULL, metric TEXT NOT NULL,
    n INTEGER, baseline REAL, served REAL, difference REAL, p_value REAL, verdict TEXT);
"""


@dataclass
class MonitorRound:
    """One canary round: the served results, their changes against the baseline, serving figures."""

    started: str
    results: list[ResultFile]
    changes: list[MetricChange]
    notes: list[str]
    requests: int
    errors: int
    errors_by_kind: dict[str, int]
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None
    unanswered_tasks: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def baseline_results(run_dir: Path, configuration: str, task_names: list[str] | None = None) -> list[ResultFile]:
    """The baseline run's result files of one configuration (the named tasks only, when given)."""
    results = [r for r in load_run_results(run_dir) if r.configuration == configuration]
    if not results:
        raise DomainbenchError(f"--baseline {run_dir}: no results for configuration {configuration!r}")
    if task_names:
        missing = sorted(set(task_names) - {r.task for r in results})
        if missing:
            raise DomainbenchError(f"--tasks: {', '.join(missing)} not in {run_dir} ({configuration})")
        results = [r for r in results if r.task in task_names]
    for result in results:
        if result.settings.get("rag"):
            raise DomainbenchError(f"{result.configuration}/{result.task}: a retrieval-augmented baseline "
                                   "cannot be replayed by monitor yet")
    return results


def canary_task(task: TaskSpec, baseline: ResultFile, sample: int, seed: int) -> TaskSpec:
    """`task` with its evaluated split cut to a seeded sample of the examples the baseline scored."""
    if task.fingerprint != baseline.suite.get("task_fingerprint"):
        raise DomainbenchError(f"{baseline.configuration}/{baseline.task}: the suite's task data changed since the "
                               "baseline ran (task fingerprints differ); rerun the baseline")
    split = baseline.settings["split"]

    def draw(example_id: str) -> str:
        return hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()
    chosen = set(sorted((example["id"] for example in baseline.examples), key=draw)[:sample])
    examples = [example for example in task.examples[split] if example["id"] in chosen]
    return dataclasses.replace(task, examples={**task.examples, split: examples})


def drop_to_detect(result: ResultFile, detect: float) -> float:
    """`detect` in the primary metric's units: as is on bounded metrics, a share of the value on unbounded ones."""
    metric = primary_metric(result)
    scale = metric_scale(metric)
    return detect * scale if scale is not None else detect * abs(result.metrics[metric]["value"])


def _spread(result: ResultFile) -> float:
    """The primary metric's per-example standard deviation, from the baseline's interval."""
    cell = result.metrics[primary_metric(result)]
    return spread_from_interval(cell["ci_low"], cell["ci_high"], max(int(cell["n"]), 1))


def canary_size(baseline: list[ResultFile], detect: float) -> int:
    """Examples per task for a drop of `detect` in each task's primary metric to be found 4 times in 5.

    The normal-approximation sample size without pairing (an upper bound: a canary agreeing with
    its baseline example by example does better), capped at what the baseline scored.
    """
    needed = []
    for result in baseline:
        spread, drop = _spread(result), drop_to_detect(result, detect)
        needed.append(len(result.examples) if drop <= 0 or not math.isfinite(spread) or spread == 0
                      else min(len(result.examples), examples_needed(spread, drop)))
    return max(needed, default=1)


def detectable_drops(baseline: list[ResultFile], sample: int) -> dict[str, tuple[str, float]]:
    """Per task: (primary metric, the drop a canary of `sample` examples detects with 80% power)."""
    return {result.task: (primary_metric(result), detectable_at(_spread(result), min(sample, len(result.examples))))
            for result in baseline}


def monitor_round(engine: OpenAIEngine, suite: Suite, baseline: list[ResultFile], *, sample: int, seed: int,
                  max_drop: dict[str, float], endpoint_spec: str,
                  settings: GateSettings | None = None) -> MonitorRound:
    """Replay the canary sample of every baseline task through `engine` and pair it with the baseline.

    A task the endpoint cannot score (log-likelihood through a chat-only endpoint, a server without
    prompt log-probs) is named in the round's notes and left unwatched, as `eval` reports it; when
    no task can be scored the monitor has nothing to watch, which is a DomainbenchError.
    """
    from engines.openai_api import NotScorable
    from run.endpoint_results import with_request_errors

    client = engine.client
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    first = (len(client.errors), client.requests_made, len(client.latencies))
    tasks = {task.name: task for task in suite.tasks}
    results, changes, notes, unanswered = [], [], [], []
    not_scorable: dict[str, str] = {}  # task -> why the endpoint cannot score it
    for base in baseline:
        if base.task not in tasks:
            raise DomainbenchError(f"{base.configuration}/{base.task}: no such task in suite {suite.name}")
        canary = canary_task(tasks[base.task], base, sample, seed)
        before = (len(client.errors), client.requests_made, len(client.latencies))
        try:
            evaluated = evaluate_task(canary, engine, split=base.settings["split"],
                                      num_fewshot=base.settings["num_fewshot"], seed=base.settings["fewshot_seed"],
                                      progress=False)
        except NotScorable as exc:
            not_scorable[base.task] = str(exc)
            notes.append(f"{base.task}: not watched, not scorable on this endpoint ({exc})")
            continue
        evaluated = with_request_errors(evaluated, client, *before)
        if evaluated is None:
            unanswered.append(base.task)
            continue
        served = result_file(evaluated, run="monitor", configuration=base.configuration, suite=suite,
                             model_spec=endpoint_spec, model_fingerprint=client.fingerprint)
        results.append(served)
        changes += metric_changes(base, served, max_drop, notes, n_resamples=1000, seed=0)
    decide_family(changes, settings or GateSettings())
    if len(not_scorable) == len(baseline):
        raise DomainbenchError(f"{endpoint_spec}: none of the baseline's tasks ({', '.join(not_scorable)}) can be "
                               f"scored on this endpoint: {next(iter(not_scorable.values()))}")
    errors = client.errors[first[0]:]
    kinds = sorted({error.kind for error in errors})
    latencies = client.latencies[first[2]:]
    return MonitorRound(started, results, changes, notes, requests=client.requests_made - first[1],
                        errors=len(errors), errors_by_kind={kind: sum(e.kind == kind for e in errors) for kind in kinds},
                        latency_p50_seconds=percentile(latencies, 0.50),
                        latency_p95_seconds=percentile(latencies, 0.95), unanswered_tasks=unanswered)


def round_problems(round_: MonitorRound, *, max_error_rate: float, max_p95: float | None) -> list[str]:
    """Why the round fails the gate (empty when it passes)."""
    problems = [f"{c.configuration}/{c.task} {c.metric}: {c.base:.4g} -> {c.new:.4g} ({c.verdict}: "
                f"{c.decision.reason})" for c in round_.changes if c.fails]
    if round_.unanswered_tasks:
        problems.append(f"every request failed: {', '.join(round_.unanswered_tasks)}")
    if round_.error_rate > max_error_rate:
        problems.append(f"error rate {round_.error_rate:.1%} > {max_error_rate:.1%} "
                        f"({round_.errors} of {round_.requests} requests)")
    if max_p95 is not None and (round_.latency_p95_seconds or 0.0) > max_p95:
        problems.append(f"p95 latency {round_.latency_p95_seconds:.3f} s > {max_p95:g} s")
    return problems


def is_first_round(db_path: Path, endpoint: str, baseline: str, configuration: str) -> bool:
    """Whether no round of this (endpoint, baseline, configuration) is stored yet: the parity check."""
    with connect(db_path) as db:
        found = db.execute("SELECT 1 FROM rounds WHERE endpoint = ? AND baseline = ? AND configuration = ? LIMIT 1",
                           (endpoint, baseline, configuration)).fetchone()
    return found is None


def store_round(db_path: Path, round_: MonitorRound, *, endpoint: str, served_model: str, baseline: str,
                configuration: str, sample: int, seed: int, parity: bool, problems: list[str]) -> int:
    """Append one round and its per-metric changes to the SQLite time series; the round's id."""
    with connect(db_path) as db:
        cursor = db.execute(
            "INSERT INTO rounds (started, endpoint, served_model, baseline, configuration, sample, seed, requests, "
            "errors, error_rate, errors_by_kind, latency_p50_seconds, latency_p95_seconds, parity, passed, problems) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (round_.started, endpoint, served_model, baseline, configuration, sample, seed, round_.requests,
             round_.errors, round_.error_rate, json.dumps(round_.errors_by_kind), round_.latency_p50_seconds,
             round_.latency_p95_seconds, int(parity), int(not problems), json.dumps(problems)))
        round_id = cursor.lastrowid
        db.executemany(
            "INSERT INTO round_metrics (round_id, task, metric, n, baseline, served, difference, p_value, verdict) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(round_id, c.task, c.metric, c.difference.n if c.difference else None, c.base, c.new,
              c.difference.difference if c.difference else c.new - c.base,
              c.difference.p_value if c.difference else None, c.verdict) for c in round_.changes])
    return round_id


@contextlib.contextmanager
def connect(db_path: Path, schema: str = _SCHEMA) -> Iterator[sqlite3.Connection]:
    """A connection to the monitor's file with `schema` in place, committed when the block succeeds, then closed."""
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(db_path)
    try:
        with db:
            db.executescript(schema)
            yield db
    finally:
        db.close()
