"""What an evaluation against an OpenAI-compatible endpoint records beside its metrics: the requests that failed.

`eval` against an endpoint and `monitor`'s canary rounds both file a task's result this way.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from engines.endpoint import EndpointClient
from stats.descriptive import percentile
from tasks.evaluate import TaskResult


def with_request_errors(result: TaskResult, client: EndpointClient, errors_before: int, requests_before: int,
                         latencies_before: int) -> TaskResult | None:
    """The result with the task's failed requests recorded (their examples are already out of its metrics).

    None when no example is left to score.
    """
    errors = client.errors[errors_before:]
    requests = client.requests_made - requests_before
    if not result.records:
        return None
    latencies = client.latencies[latencies_before:]
    serving = {"engine": "OpenAIEngine", "endpoint": client.endpoint.url, "served_model": client.model_id,
               "concurrency": client.concurrency, "timeout_seconds": client.timeout, "requests": requests,
               "request_errors": len(errors), "error_rate": len(errors) / requests if requests else 0.0,
               "errors_by_kind": dict(sorted(Counter(error.kind for error in errors).items())),
               "unscored_examples": result.failed,
               "latency_p50_seconds": percentile(latencies, 0.50), "latency_p95_seconds": percentile(latencies, 0.95)}
    return dataclasses.replace(result, cost={**result.cost, "serving": serving})
