"""The Prometheus metrics `domainbench serve` exposes on /metrics, and `domainbench monitor` while it watches.

One registry per server (not prometheus-client's global one), so an app can be built twice in one
process. Resident memory is prometheus-client's own process collector
(`process_resident_memory_bytes`, read from /proc on Linux).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

from harness.errors import DomainbenchError
from serve.traces import RATINGS

if TYPE_CHECKING:
    from serve.monitor import MonitorRound
    from serve.satisfaction import Satisfaction

# CPU serving of a 135M model takes 0.1–10 s a request; the defaults stop at 10 s.
_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOKENS_PER_SECOND = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class ServingMetrics:
    """Latency, time to first token, tokens, in-flight requests and errors by kind, in one registry."""

    def __init__(self):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.latency = Histogram("domainbench_request_latency_seconds", "Time from request to full response",
                                 ["route"], buckets=_SECONDS, registry=self.registry)
        self.time_to_first_token = Histogram(
            "domainbench_time_to_first_token_seconds",
            "Time from request to the first generated token reaching the client (the whole answer when not streamed)",
            ["route"], buckets=_SECONDS, registry=self.registry)
        self.generated_tokens = Counter("domainbench_generated_tokens", "Tokens generated", ["route"],
                                        registry=self.registry)
        self.prompt_tokens = Counter("domainbench_prompt_tokens", "Prompt tokens processed", ["route"],
                                     registry=self.registry)
        self.tokens_per_second = Histogram("domainbench_output_tokens_per_second",
                                           "Generated tokens per second of each request (a histogram over "
                                           "requests: buckets of tok/s, not a rate)", ["route"],
                                           buckets=_TOKENS_PER_SECOND, registry=self.registry)
        self.requests = Counter("domainbench_requests", "Requests, by status code (499: the client went away "
                                "before its answer, and its generation stopped)", ["route", "status"],
                                registry=self.registry)
        self.in_flight = Gauge("domainbench_requests_in_flight", "Requests received and not yet answered",
                               registry=self.registry)
        self.errors = Counter("domainbench_request_errors", "Failed requests, by kind", ["kind"],
                              registry=self.registry)
        self.feedback = Counter("domainbench_feedback", "User ratings received (POST /v1/feedback), by rating",
                                ["rating"], registry=self.registry)
        self.satisfaction = Gauge("domainbench_satisfaction_rate", "Share of the ratings received since the server "
                                  "started that are \"up\" (NaN before the first); `monitor --traces` gives it "
                                  "per window with an interval", registry=self.registry)
        self.satisfaction.set(math.nan)
        self._ratings = dict.fromkeys(RATINGS, 0)
        for rating in RATINGS:  # both series exist from the start, so a rate() over them is defined
            self.feedback.labels(rating)

    @contextmanager
    def request(self, route: str):
        """Count one request in flight and time it; the body sets `status` (default 200)."""
        outcome = {"status": 200}
        started = time.perf_counter()
        self.in_flight.inc()
        try:
            yield outcome
        finally:
            self.in_flight.dec()
            self.latency.labels(route).observe(time.perf_counter() - started)
            self.requests.labels(route, str(outcome["status"])).inc()

    def generated(self, route: str, *, prompt_tokens: int, completion_tokens: int, seconds: float,
                  first_token_seconds: float) -> None:
        self.prompt_tokens.labels(route).inc(prompt_tokens)
        self.generated_tokens.labels(route).inc(completion_tokens)
        self.time_to_first_token.labels(route).observe(first_token_seconds)
        if completion_tokens and seconds > 0:
            self.tokens_per_second.labels(route).observe(completion_tokens / seconds)

    def rated(self, rating: str) -> None:
        """Count one stored rating and update the satisfaction rate (called on the event loop: no lock)."""
        self.feedback.labels(rating).inc()
        self._ratings[rating] += 1
        self.satisfaction.set(self._ratings[RATINGS[0]] / sum(self._ratings.values()))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MonitorMetrics:
    """The latest canary round as gauges (quality against the baseline, latency, errors) and rounds by verdict."""

    def __init__(self, *, endpoint: str, baseline: str, configuration: str):
        self.registry = CollectorRegistry()
        Info("domainbench_monitor", "What the monitor watches", registry=self.registry).info(
            {"endpoint": endpoint, "baseline": baseline, "configuration": configuration})
        self.rounds = Counter("domainbench_monitor_rounds", "Canary rounds, by verdict", ["verdict"],
                              registry=self.registry)
        self.passed = Gauge("domainbench_monitor_round_passed", "1 when the latest round passed the gate, else 0",
                            registry=self.registry)
        self.finished = Gauge("domainbench_monitor_last_round_timestamp_seconds", "When the latest round ended",
                              registry=self.registry)
        self.served = Gauge("domainbench_monitor_served_metric", "The latest round's metric on the canary sample",
                            ["task", "metric"], registry=self.registry)
        self.baseline = Gauge("domainbench_monitor_baseline_metric", "The baseline's metric on the same examples",
                              ["task", "metric"], registry=self.registry)
        self.requests = Gauge("domainbench_monitor_requests", "Requests of the latest round", registry=self.registry)
        self.error_rate = Gauge("domainbench_monitor_error_rate", "Failed share of the latest round's requests",
                                registry=self.registry)
        self.errors = Gauge("domainbench_monitor_request_errors", "Failed requests of the latest round, by kind",
                            ["kind"], registry=self.registry)
        # Two plain gauges, not one with a `quantile` label: that label is a summary's convention, and
        # a gauge carrying it confuses Prometheus tooling that treats it as one.
        self.latency_p50 = Gauge("domainbench_monitor_latency_p50_seconds", "Median request latency of the latest "
                                 "round (NaN when no request was answered)", registry=self.registry)
        self.latency_p95 = Gauge("domainbench_monitor_latency_p95_seconds", "95th-percentile request latency of the "
                                 "latest round (NaN when no request was answered)", registry=self.registry)
        self.ratings = Gauge("domainbench_monitor_ratings", "User ratings in the latest round's window (--traces)",
                             registry=self.registry)
        self.satisfaction = Gauge("domainbench_monitor_satisfaction_rate", "Share rated up in the latest round's "
                                  "window (NaN without ratings)", registry=self.registry)
        self.satisfaction_dropped = Gauge("domainbench_monitor_satisfaction_dropped", "1 when the latest window's "
                                          "satisfaction dropped significantly against the previous or first window",
                                          registry=self.registry)
        self.satisfaction.set(math.nan)

    def observe(self, round_: MonitorRound, problems: list[str], satisfaction: Satisfaction | None = None) -> None:
        """Publish one round (its users' satisfaction too, when watched); series of a previous round that this one
        lacks are dropped."""
        self.rounds.labels("fail" if problems else "pass").inc()
        self.passed.set(0 if problems else 1)
        self.finished.set(time.time())
        for gauge in (self.served, self.baseline, self.errors):
            gauge.clear()
        for change in round_.changes:
            self.served.labels(change.task, change.metric).set(change.new)
            self.baseline.labels(change.task, change.metric).set(change.base)
        self.requests.set(round_.requests)
        self.error_rate.set(round_.error_rate)
        for kind, count in round_.errors_by_kind.items():
            self.errors.labels(kind).set(count)
        for gauge, seconds in ((self.latency_p50, round_.latency_p50_seconds),
                               (self.latency_p95, round_.latency_p95_seconds)):
            gauge.set(math.nan if seconds is None else seconds)
        if satisfaction is not None:
            window = satisfaction.window
            self.ratings.set(window.rated)
            self.satisfaction.set(math.nan if window.rate is None else window.rate)
            self.satisfaction_dropped.set(1 if satisfaction.drops else 0)

    @contextmanager
    def exposed(self, host: str, port: int) -> Iterator[None]:
        """Serve the registry over HTTP (any path, /metrics included) for the block; the port is freed after."""
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise DomainbenchError(f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror})") from None
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
