"""deploy/grafana/domainbench.json: every series its PromQL queries is one `serve` or `monitor` exposes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import promql_parser
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port

from engines.hf import HFEngine
from serve.api import create_app
from serve.metrics import MonitorMetrics
from serve.model import ServedModel

DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "domainbench.json"
# Grafana's own variables, as Grafana substitutes them before Prometheus sees a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def dashboard_queries(dashboard: dict) -> list[str]:
    """The PromQL of every panel target (rows' panels included) and of every query variable."""
    panels = [p for panel in dashboard["panels"] for p in [panel, *panel.get("panels", [])]]
    queries = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(METRIC, label) is Grafana's, not PromQL: the metric inside is what Prometheus is asked.
            queries.append(variable["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0])
    return queries


def queried_series(expr: str) -> set[str]:
    """The metric names a PromQL expression selects, from promql-parser's syntax tree."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    names, stack = set(), [promql_parser.parse(expr)]
    while stack:
        node = stack.pop()
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
        elif isinstance(node, promql_parser.MatrixSelector):
            stack.append(node.vector_selector)
        elif isinstance(node, promql_parser.BinaryExpr):
            stack += [node.lhs, node.rhs]
        elif isinstance(node, promql_parser.Call):
            stack += list(node.args)
        elif isinstance(node, promql_parser.AggregateExpr):
            stack += [node.expr] + ([node.param] if node.param is not None else [])
        elif isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
            stack.append(node.expr)
    return names


def exposed_series(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_queried_series_are_read_from_the_syntax_tree():
    assert queried_series("sum(rate(a_total{job=~\"$job\"}[$__rate_interval])) / on (job) b - time()") == {
        "a_total", "b"}


def test_every_series_the_dashboard_queries_is_exposed_by_serve_or_monitor(tiny_model, tiny_tokenizer):
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queried = set().union(*map(queried_series, dashboard_queries(dashboard)))
    assert {"domainbench_requests_total", "domainbench_monitor_rounds_total"} <= queried

    engine = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    with TestClient(create_app(ServedModel("tiny", engine))) as client:
        client.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 3})
        client.post("/v1/completions", json={"prompt": "Hello", "temperature": 0.7})  # refused: an error by kind
        served = exposed_series(client.get("/metrics").text)

    monitor = MonitorMetrics(endpoint="http://127.0.0.1:1/v1", baseline="/runs/base", configuration="base")
    change = SimpleNamespace(task="errno-qa", metric="f1", base=0.5, new=0.4)
    monitor.observe(SimpleNamespace(changes=[change], requests=4, errors=1, error_rate=0.25,
                                    errors_by_kind={"timeout": 1}, latency_p50_seconds=0.1, latency_p95_seconds=0.3),
                    ["f1 dropped"])
    port = free_port()
    with monitor.exposed("127.0.0.1", port):
        watched = exposed_series(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)

    missing = sorted(queried - served - watched)
    assert not missing, f"{DASHBOARD.name} queries series neither serve nor monitor exposes: {missing}"


def test_panels_query_the_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["templating"]["list"][0] == {**dashboard["templating"]["list"][0], "name": "datasource",
                                                  "type": "datasource", "query": "prometheus"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"]["uid"] == "${datasource}" for p in panels)
