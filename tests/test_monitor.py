"""`domainbench monitor`: a canary round against the baseline run it must still match.

The baseline is an `eval` of llama-cpp-python's server on the builtin GGUF through the endpoint
path, so one monitor round against that same server must find parity (exit 0); against a copy of
the baseline whose stored scores were tampered to be perfect it must find a regression (exit 1).
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from servers import free_port, start_llama_server, stop_server

from harness.cli import main

TASKS = "errno-qa,section-classification"


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
def test_a_significant_drop_against_the_baseline_exits_1_and_is_stored(served_baseline, tmp_path, capsys):
    url, baseline = served_baseline
    tampered = tmp_path / "tampered"
    shutil.copytree(baseline, tampered)
    path = tampered / "results" / "base" / "errno-qa.json"
    record = json.loads(path.read_text())
    for example in record["examples"]:  # the "approved" model answered every question exactly
        example["scores"].update(exact_match=1.0, f1=1.0)
    path.write_text(json.dumps(record))
    db = tmp_path / "monitor.sqlite"
    with pytest.raises(SystemExit) as exit_info:
        main(["monitor", f"openai+{url}", "--baseline", str(tampered), "--tasks", "errno-qa", "--once",
              "--sample", "3", "--db", str(db)])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "verdict: FAIL" in out and "errno-qa exact_match" in out
    ((parity, passed, *_),) = rounds(db)
    assert (parity, passed) == (1, 0)
