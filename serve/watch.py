"""Watching a served model: connecting to its endpoint, and one monitor round from replay to verdict.

A round replays a seeded canary sample of the baseline run's examples (serve/monitor.py), adds the
satisfaction of the ratings users gave since the last round where a trace store is named
(serve/satisfaction.py), stores both in the monitor's SQLite series and publishes them (Prometheus,
MLflow). `loadtest` and `monitor` connect the same way; the command only prints what a round found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import DomainbenchError
from reports.changes import GateSettings
from reports.schema import ResultFile
from serve.metrics import MonitorMetrics
from serve.monitor import MonitorRound, is_first_round, monitor_round, round_problems, store_round
from serve.satisfaction import Satisfaction, round_satisfaction, store_satisfaction
from serve.traces import configuration_fingerprint
from tasks.suite import Suite


def connect_endpoint(endpoint_spec: str, tokenizer_spec: str | None = None, *, trust_remote_code: bool = False,
                     **options):
    """The engine on ENDPOINT, connected before any work (a server that is down is one line, exit 2), with
    the tokenizer of `tokenizer_spec` (a model spec whose tokenizer the served model uses) if given."""
    from engines.registry import EngineOptions, engine_kind
    from harness.models import load_tokenizer, resolve_model
    from run.configuration import configuration_from_spec

    if not engine_kind(endpoint_spec).remote:
        raise DomainbenchError(f"ENDPOINT {endpoint_spec}: expected openai+http://HOST:PORT/v1 or openai-chat+http://… "
                               "(optionally #MODEL)")
    engine = configuration_from_spec(endpoint_spec, EngineOptions(**{"progress": False, **options})).engine
    if tokenizer_spec:
        engine.tokenizer = load_tokenizer(resolve_model(tokenizer_spec), trust_remote_code=trust_remote_code)
    return engine


def baseline_tokenizer(tokenizer_spec: str | None, baseline: ResultFile) -> object | None:
    """The tokenizer named, else the one the baseline's endpoint eval named, else the baseline model's own."""
    from harness.models import load_tokenizer, resolve_model

    spec = tokenizer_spec or (baseline.model.get("tokenizer") if baseline.model.get("endpoint")
                              else baseline.model.get("spec"))
    return load_tokenizer(resolve_model(spec)) if spec else None


@dataclass(frozen=True)
class Watch:
    """What every round of one `monitor` holds the endpoint to, and where its rounds go."""

    baseline_dir: Path
    endpoint_spec: str
    sample: int
    seed: int
    db_path: Path
    max_drop: dict[str, float]
    max_error_rate: float
    max_p95: float | None
    settings: GateSettings
    traces: Path | None = None


@dataclass
class WatchedRound:
    """One round's findings: the canary against the baseline, the users' satisfaction, the problems that fail it."""

    round: MonitorRound
    parity: bool                       # the first round against this baseline: served vs offline
    satisfaction: Satisfaction | None
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def watch_round(engine, suite: Suite, baseline: list[ResultFile], watch: Watch, *, metrics: MonitorMetrics,
                tracking=None) -> WatchedRound:
    """Replay, judge, store and publish one round (`tracking`: reports.tracking.MonitorTracking or None)."""
    url, configuration = engine.client.endpoint.url, baseline[0].configuration
    baseline_path = str(watch.baseline_dir.resolve())
    parity = is_first_round(watch.db_path, url, baseline_path, configuration)
    round_ = monitor_round(engine, suite, baseline, sample=watch.sample, seed=watch.seed, max_drop=watch.max_drop,
                           endpoint_spec=watch.endpoint_spec, settings=watch.settings)
    problems = round_problems(round_, max_error_rate=watch.max_error_rate, max_p95=watch.max_p95)
    key = (url, baseline_path, configuration)
    satisfaction = (round_satisfaction(watch.traces, watch.db_path, key=key, correction=watch.settings.correction,
                                       alpha=watch.settings.alpha,
                                       served=configuration_fingerprint(engine.client.model_info))
                    if watch.traces is not None else None)
    problems += satisfaction.problems() if satisfaction else []
    round_id = store_round(watch.db_path, round_, endpoint=url, served_model=engine.client.model_id,
                           baseline=baseline_path, configuration=configuration, sample=watch.sample, seed=watch.seed,
                           parity=parity, problems=problems)
    if satisfaction is not None:
        store_satisfaction(watch.db_path, round_id, satisfaction, key=key, traces=watch.traces)
    metrics.observe(round_, problems, satisfaction)
    if tracking is not None:
        tracking.observe(round_, problems, parity=parity)
    return WatchedRound(round_, parity, satisfaction, problems)
