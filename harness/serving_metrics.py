"""The Prometheus metrics `domainbench serve` exposes on /metrics.

One registry per server (not prometheus-client's global one), so an app can be built twice in one
process. Resident memory is prometheus-client's own process collector
(`process_resident_memory_bytes`, read from /proc on Linux).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

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
                                           "Generated tokens per second of each request", ["route"],
                                           buckets=_TOKENS_PER_SECOND, registry=self.registry)
        self.requests = Counter("domainbench_requests", "Requests answered, by status code", ["route", "status"],
                                registry=self.registry)
        self.in_flight = Gauge("domainbench_requests_in_flight", "Requests received and not yet answered",
                               registry=self.registry)
        self.errors = Counter("domainbench_request_errors", "Failed requests, by kind", ["kind"],
                              registry=self.registry)

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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
