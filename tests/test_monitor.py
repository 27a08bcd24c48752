"""`domainbench monitor`: a canary round against the baseline run it must still match.

The baseline is an `eval` of llama-cpp-python's server on the builtin GGUF through the endpoint
path, so one monitor round against that same server must find parity (exit 0); against a copy of
the baseline whose stored scores were tampered to be perfect, three examples cannot decide (the
best p three flipped examples can give is 0.25), so the round says so and does not fail. A drop on
enough examples fails the round (tested on result files, no endpoint needed).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time

import httpx
import pytest
from servers import free_port, start_llama_server, stop_server

from cli.main import main

TASKS = "errno-qa,section-classification"
WATCH_SECONDS = 60


def test_a_down_endpoint_is_one_line_and_exit_2_before_any_work(capsys, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(SystemExit) as exit_info:
        main(["monitor", f"openai+{url}", "--baseline", str(tmp_path / "no-run"), "--once",
              "--db", str(tmp_path / "monitor.sqlite")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and url in error and "not reachable" in error
    assert not (tmp_path / "monitor.sqlite").exists()


@pytest.fixture(scope="module")
def served_baseline(tmp_path_factory):
    """(server url, run dir of an endpoint eval of that server)."""
    root = tmp_path_factory.mktemp("monitor")
    process, url = start_llama_server(root / "server.log")
    try:
        main(["eval", "--model", f"openai+{url}", "--tokenizer", "smollm2-135m-instruct", "--suite", "tiny",
              "--tasks", TASKS, "--limit", "3", "--num-fewshot", "0", "--concurrency", "2", "--output",
              str(root / "baseline")])
        yield url, root / "baseline"
    finally:
        stop_server(process)


def rounds(db):
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT parity, passed, requests, errors, latency_p95_seconds FROM rounds "
                                  "ORDER BY id").fetchall()


@pytest.mark.slow
def test_the_first_round_is_a_parity_check_that_holds_against_the_same_server(served_baseline, tmp_path, capsys):
    url, baseline = served_baseline
    db = tmp_path / "monitor.sqlite"
    main(["monitor", f"openai+{url}", "--baseline", str(baseline), "--once", "--sample", "3", "--db", str(db)])
    out = capsys.readouterr().out
    assert "parity check" in out and "verdict: pass" in out and "REGRESSION" not in out
    ((parity, passed, requests, errors, p95),) = rounds(db)
    assert (parity, passed, errors) == (1, 1, 0) and requests > 0 and p95 > 0
    with sqlite3.connect(db) as connection:
        metrics = connection.execute("SELECT task, n, difference FROM round_metrics").fetchall()
    assert {task for task, _, _ in metrics} == set(TASKS.split(","))
    assert all(n == 3 and difference == 0 for _, n, difference in metrics)


@pytest.mark.slow
def test_a_drop_on_three_examples_cannot_decide_and_does_not_fail(served_baseline, tmp_path, capsys):
    url, baseline = served_baseline
    tampered = tmp_path / "tampered"
    shutil.copytree(baseline, tampered)
    path = tampered / "results" / "base" / "errno-qa.json"
    record = json.loads(path.read_text())
    for example in record["examples"]:  # the "approved" model answered every question exactly
        example["scores"].update(exact_match=1.0, f1=1.0)
    path.write_text(json.dumps(record))
    db = tmp_path / "monitor.sqlite"
    main(["monitor", f"openai+{url}", "--baseline", str(tampered), "--tasks", "errno-qa", "--once",
          "--sample", "3", "--db", str(db)])
    out = capsys.readouterr().out
    assert "REGRESSION" not in out and "verdict: pass" in out
    assert "cannot decide at this n" in out and "Family: " in out and "correction: Holm" in out
    assert "errno-qa: at n = 3 a drop in f1 smaller than about" in out and "less than 80% of the time" in out
    with sqlite3.connect(db) as connection:
        verdicts = {verdict for (verdict,) in connection.execute("SELECT verdict FROM round_metrics")}
    assert "cannot decide at this n" in verdicts and "REGRESSION" not in verdicts


def test_a_drop_on_enough_examples_fails_the_round_and_one_on_too_few_does_not():
    from report_runs import qa_result

    from reports.changes import GateSettings, decide_family, metric_changes
    from serve.monitor import MonitorRound, round_problems

    def round_against(baseline_correct: int, served_correct: int, n: int) -> MonitorRound:
        baseline = qa_result("base", "base", baseline_correct, n=n)
        served = qa_result("served", "base", served_correct, n=n)
        changes = decide_family(metric_changes(baseline, served, {}, [], 300, 0), GateSettings())
        return MonitorRound("now", [served], changes, [], requests=n, errors=0, errors_by_kind={},
                            latency_p50_seconds=0.1, latency_p95_seconds=0.2)

    problems = round_problems(round_against(40, 30, 40), max_error_rate=0.05, max_p95=None)
    assert len(problems) == 2 and all("REGRESSION" in problem for problem in problems)
    assert round_problems(round_against(3, 0, 3), max_error_rate=0.05, max_p95=None) == []


def test_the_canary_is_sized_from_the_drop_to_detect():
    from report_runs import perplexity_result, qa_result

    from serve.monitor import canary_size, detectable_drops

    baseline = [qa_result("base", "base", 20, n=40)]
    small, large = canary_size(baseline, 0.5), canary_size(baseline, 0.4)
    assert small < large <= 40  # a smaller drop needs more examples, never more than the baseline scored
    (metric, drop), = detectable_drops(baseline, large).values()
    assert metric == "f1" and drop <= 0.4 + 1e-9
    assert canary_size([perplexity_result("base", "base", -2.0)], 0.1) >= 1


def _scrape(url: str) -> dict[str, float]:
    """Sample name with labels -> value, from a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=5).text
    return {name + json.dumps(labels, sort_keys=True): value for family in text_string_to_metric_families(text)
            for name, labels, value, *_ in family.samples}


def _exit_code(codes: list, argv: list[str]) -> None:
    try:
        main(argv)
    except SystemExit as exc:
        codes.append(exc.code)


def test_the_monitor_exposes_each_rounds_figures_to_prometheus_while_it_watches(tiny_model, tiny_tokenizer,
                                                                                  tmp_path, capsys):
    """Rounds every 0.2 s against the tiny model served in a thread; scraped while watching; the server's end
    fails the next round, which ends the watch (exit 1)."""
    from servers import app_in_thread

    from engines.hf import HFEngine
    from serve.api import create_app
    from serve.model import ServedModel

    engine = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    port = free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    with app_in_thread(create_app(ServedModel("tiny", engine))) as url:
        main(["eval", "--model", f"openai+{url}", "--tokenizer", "tiny-random-llama", "--suite", "tiny",
              "--tasks", "errno-qa", "--limit", "2", "--num-fewshot", "0", "--output", str(tmp_path / "baseline")])
        exit_codes = []
        watching = threading.Thread(target=_exit_code, daemon=True, args=(exit_codes, [
            "monitor", f"openai+{url}", "--baseline", str(tmp_path / "baseline"), "--every", "0.2", "--sample", "2",
            "--timeout", "10", "--db", str(tmp_path / "monitor.sqlite"), "--metrics-port", str(port)]))
        watching.start()
        deadline, samples = time.monotonic() + WATCH_SECONDS, {}
        while samples.get('domainbench_monitor_rounds_total{"verdict": "pass"}', 0) < 2:
            assert time.monotonic() < deadline and watching.is_alive(), "no two passing rounds scraped"
            time.sleep(0.2)
            try:
                samples = _scrape(metrics_url)
            except httpx.TransportError:
                samples = {}  # not listening yet
    assert samples["domainbench_monitor_round_passed{}"] == 1
    assert samples['domainbench_monitor_served_metric{"metric": "exact_match", "task": "errno-qa"}'] == samples[
        'domainbench_monitor_baseline_metric{"metric": "exact_match", "task": "errno-qa"}']
    assert samples["domainbench_monitor_requests{}"] > 0 and samples["domainbench_monitor_error_rate{}"] == 0
    assert samples["domainbench_monitor_latency_p95_seconds{}"] > 0
    assert samples["domainbench_monitor_latency_p50_seconds{}"] > 0
    assert not any("quantile" in sample for sample in samples)  # a gauge takes no summary label
    assert samples[f'domainbench_monitor_info{{"baseline": "{(tmp_path / "baseline").resolve()}", '
                   f'"configuration": "base", "endpoint": "{url}"}}'] == 1
    watching.join(timeout=WATCH_SECONDS)
    assert exit_codes == [1] and "verdict: FAIL" in capsys.readouterr().out
    with pytest.raises(httpx.TransportError):
        httpx.get(metrics_url, timeout=2)  # the port is released when the watch ends
