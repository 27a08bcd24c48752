"""`--mlflow`: `run`, `compare` and `monitor` logged to MLflow, read back through MLflow's own client."""

from __future__ import annotations

import json
import sys

import pytest
from report_runs import standard_run

from cli.main import main
from reports.compare import compare_runs
from reports.schema import load_result
from reports.summary import result_paths

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """(tracking URI, MlflowClient) on a fresh SQLite store; artifacts land under tmp_path/mlruns."""
    monkeypatch.chdir(tmp_path)  # MLflow puts a SQLite store's artifacts in ./mlruns
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, mlflow.MlflowClient(tracking_uri=uri)


def runs_of(client, experiment: str) -> dict:
    """{run name: Run} of an experiment."""
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment}"
    return {run.info.run_name: run for run in client.search_runs([found.experiment_id])}


def artifact_text(client, run_id: str, path: str, tmp_path) -> str:
    local = client.download_artifacts(run_id, path, str(tmp_path))
    with open(local, encoding="utf-8") as handle:
        return handle.read()


def test_run_logs_params_every_metric_with_its_interval_and_the_report(store, tmp_path, monkeypatch):
    uri, client = store
    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    main(["run", "--suite", "tiny", "--model", "tiny-random-llama", "--configurations", "base", "--profile", "quick",
          "--device", "cpu", "--output", str(tmp_path / "runs"), "--name", "tracked", "--mlflow", uri])
    run_dir = tmp_path / "runs" / "tracked"
    results = [load_result(path) for path in result_paths(run_dir)]

    runs = runs_of(client, "domainbench-tiny")
    parent, child = runs["tracked"], runs["base"]
    assert parent.info.status == child.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.params["suite"] == "tiny" and parent.data.params["profile"] == "quick"
    assert parent.data.params["suite_fingerprint"] == results[0].suite["fingerprint"]
    for result in results:
        assert parent.data.params[f"task_fingerprint.{result.task}"] == result.suite["task_fingerprint"]
    assert child.data.params["model.fingerprint"] == results[0].model["fingerprint"]
    logged = child.data.metrics
    for result in results:
        for name, cell in result.metrics.items():
            key = f"{result.task}/{name}"
            interval = (logged[key], logged[f"{key}/ci_low"], logged[f"{key}/ci_high"], logged[f"{key}/n"])
            assert interval == pytest.approx((cell["value"], cell["ci_low"], cell["ci_high"], cell["n"]))
    assert logged["cost/eval_seconds_per_example"] > 0
    report = artifact_text(client, parent.info.run_id, "report.md", tmp_path / "got")
    assert report == (run_dir / "report.md").read_text()
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "report.md", "report.html", "summary.json", "summary.csv", "run.yaml", "plots"}
    assert "errno-qa: best" in parent.data.tags["mlflow.note.content"]  # the recommendations, as its description


def test_compare_logs_each_verdict_and_the_table(store, tmp_path, capsys):
    uri, client = store
    base, new = standard_run(tmp_path / "base"), standard_run(tmp_path / "new", "candidate", adapter_correct=20)
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(base), str(new), "--resamples", "300", "--max-drop", "exact_match=0.01", "--mlflow", uri])
    assert exit_info.value.code == 1  # the gate's exit code is unchanged
    table = capsys.readouterr().out
    expected = compare_runs(base, new, {"exact_match": 0.01}, n_resamples=300)

    (logged,) = runs_of(client, "domainbench-manpages").values()
    assert logged.info.run_name == "compare nightly -> candidate"
    assert logged.data.params["semantics"] == "drop" and logged.data.params["correction"] == "holm"
    assert logged.data.params["max_drop.exact_match"] == "0.01"
    assert logged.data.metrics["gate/passed"] == 0
    assert logged.data.metrics["gate/regressions"] == len(expected.regressions) > 0
    for change in expected.changes:
        key = f"{change.configuration}/{change.task}/{change.metric}"
        assert logged.data.tags[f"verdict.{key}"].startswith(change.verdict)
        if change.difference is not None:
            assert logged.data.metrics[f"{key}/difference"] == pytest.approx(change.difference.difference)
            assert logged.data.metrics[f"{key}/ci_low"] == pytest.approx(change.difference.ci_low)
            assert logged.data.metrics[f"{key}/p_adjusted"] == pytest.approx(change.p_adjusted)
    assert artifact_text(client, logged.info.run_id, "compare.md", tmp_path / "got") == table
    verdicts = json.loads(artifact_text(client, logged.info.run_id, "verdicts.json", tmp_path / "got"))
    assert [c["verdict"] for c in verdicts["changes"]] == [c.verdict for c in expected.changes]


def test_monitor_logs_each_round_as_a_step_of_one_mlflow_run(store, tiny_model, tiny_tokenizer, tmp_path):
    """Two --once watches on the tiny model served in a thread: the first round is the parity check."""
    from servers import app_in_thread

    from engines.hf import HFEngine
    from serve.api import create_app
    from serve.model import ServedModel

    uri, client = store
    engine = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    with app_in_thread(create_app(ServedModel("tiny", engine))) as url:
        main(["eval", "--model", f"openai+{url}", "--tokenizer", "tiny-random-llama", "--suite", "tiny",
              "--tasks", "errno-qa", "--limit", "2", "--num-fewshot", "0", "--output", str(tmp_path / "baseline")])
        watch = ["monitor", f"openai+{url}", "--baseline", str(tmp_path / "baseline"), "--once", "--sample", "2",
                 "--db", str(tmp_path / "monitor.sqlite"), f"--mlflow={uri}"]
        main(watch)
        main(watch)

    experiment = client.get_experiment_by_name("domainbench-tiny").experiment_id
    runs = sorted(client.search_runs([experiment]), key=lambda run: run.info.start_time)
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
    first, second = runs
    assert first.data.params["endpoint"] == url and first.data.params["sample"] == "2"
    assert first.data.metrics["round/parity_check"] == 1 and second.data.metrics["round/parity_check"] == 0
    assert first.data.metrics["round/passed"] == 1 and first.data.tags["domainbench.verdict"] == "pass"
    assert first.data.metrics["errno-qa/exact_match/served"] == first.data.metrics["errno-qa/exact_match/baseline"]
    assert first.data.metrics["round/requests"] > 0
    (history,) = client.get_metric_history(first.info.run_id, "round/passed")
    assert history.step == 0
    round_record = json.loads(artifact_text(client, first.info.run_id, "rounds/00000.json", tmp_path / "got"))
    assert round_record["parity_check"] and round_record["problems"] == []
    assert {(c["task"], c["metric"]) for c in round_record["changes"]} == {("errno-qa", "exact_match"),
                                                                           ("errno-qa", "f1")}


def test_monitor_rounds_of_one_watch_are_successive_steps(store):
    """A watch with --every logs each round as the next step of its run (a failing one ends it, FINISHED)."""
    from types import SimpleNamespace

    from reports.tracking import monitor_tracking

    uri, client = store
    rounds = [SimpleNamespace(started="t0", changes=[], notes=[], requests=4, errors=0, error_rate=0.0,
                              latency_p50_seconds=0.1, latency_p95_seconds=0.2),
              SimpleNamespace(started="t1", changes=[], notes=["slow"], requests=4, errors=2, error_rate=0.5,
                              latency_p50_seconds=None, latency_p95_seconds=None)]
    with pytest.raises(SystemExit):
        with monitor_tracking(uri, suite="tiny", endpoint="http://e/v1", baseline="/b", configuration="base",
                              params={"sample": 2}) as tracking:
            tracking.observe(rounds[0], [], parity=True)
            tracking.observe(rounds[1], ["error rate 50.0% > 5.0%"], parity=False)
            sys.exit(1)
    (run,) = runs_of(client, "domainbench-tiny").values()
    assert run.info.status == "FINISHED" and run.data.tags["domainbench.verdict"] == "fail"
    history = client.get_metric_history(run.info.run_id, "round/error_rate")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 0.0), (1, 0.5)]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "round/latency_p95_seconds")] == [0]


def test_without_mlflow_installed_the_flag_stops_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--suite", "tiny", "--model", "tiny-random-llama", "--configurations", "base",
              "--output", str(tmp_path / "runs"), "--name", "never", "--mlflow"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "pip install 'domainbench[mlflow]'" in error
    assert not (tmp_path / "runs").exists()


def test_a_path_where_the_optional_uri_goes_is_refused(tmp_path, capsys):
    base, new = standard_run(tmp_path / "base"), standard_run(tmp_path / "new", "candidate")
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--mlflow", str(base), str(new)])
    assert exit_info.value.code == 2
    assert "--mlflow=URI" in capsys.readouterr().err


def test_each_configuration_logs_the_recipe_its_artifacts_were_trained_with(store, tmp_path):
    """The recipe comes from the manifest of the run.yaml artifact whose fingerprint the configuration's model has."""
    from harness.manifest import MANIFEST_FILE
    from reports.run_report import write_report
    from reports.tracking import log_run

    uri, client = store
    run_dir = standard_run(tmp_path / "nightly")
    trained = tmp_path / "artifacts" / "full"
    trained.mkdir(parents=True)
    (trained / MANIFEST_FILE).write_text(json.dumps({"strategy": "full", "recipe": {"train": {"max_steps": 3}}}))
    (run_dir / "run.yaml").write_text(json.dumps({  # JSON is YAML
        "name": "nightly", "profile": "quick", "spec": {"recipes": {"full": "recipes/full.yaml"}},
        "weights": {"finetuned": {"path": str(trained), "fingerprint": "m"}}}))
    write_report(run_dir)
    log_run(run_dir, uri)

    runs = runs_of(client, "domainbench-manpages")
    assert {"nightly", "base", "adapter", "rag"} <= runs.keys()
    params = runs["adapter"].data.params
    assert params["recipe.full.train.max_steps"] == "3" and params["recipe.full.file"] == "recipes/full.yaml"
    assert runs["adapter"].data.tags["domainbench.best"] != "none"  # the report's ★ for adapter's QA scores
