"""Runs, comparisons and canary rounds logged to MLflow (`--mlflow [URI]`), from finished outputs only.

What lands where, in one MLflow experiment per suite (`domainbench-<suite>`; MLFLOW_EXPERIMENT_NAME
overrides it, as it does for MLflow's own clients):

- `run`: a parent MLflow run named after the run, holding the run's parameters (suite and task
  fingerprints, model, profile, configurations), the report (report.md, report.html, summary.json,
  summary.csv, plots/, run.yaml) as artifacts and its recommendations as the description; under
  it one child run per configuration, holding the configuration's parameters (model, artifact
  fingerprints, each tuned artifact's recipe, retrieval settings) and every metric as
  `<task>/<metric>` beside `<task>/<metric>/ci_low`, `/ci_high` and `/n`, its cost as
  `cost/<item>`. The runs table compares configurations as rows, and the charts group by task.
- `compare`: one run per comparison: the gate's settings as parameters, each change's Δ with its
  interval and p-values as `<configuration>/<task>/<metric>/…` metrics, each verdict as a
  `verdict.<configuration>/<task>/<metric>` tag, the Markdown table as description and artifact.
- `monitor`: one run per watch, each canary round one step, so a metric's chart is its history:
  served and baseline values, Δ and p per task and metric, error rate, latency, passed; each
  round's verdicts as `rounds/<step>.json`.

MLflow is an optional extra (`pip install 'domainbench[mlflow]'`): it is imported only here, and
`tracking_uri` checks it is there before a command starts any work.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import click
import yaml

from harness.errors import DomainbenchError
from harness.manifest import read_manifest
from reports.changes import MetricChange
from reports.compare import Comparison, headline, render_comparison
from reports.run_report import PLOTS_DIR, REPORT_HTML, REPORT_MD
from reports.schema import ResultFile
from reports.summary import CHEAPEST_NOTE, SUMMARY_CSV, SUMMARY_JSON, Recommendation, load_run_results, run_name

# MLflow's own default since 3.7 (the file store is legacy): `mlflow ui` started in the same
# directory opens it, and artifacts go to ./mlruns beside it.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Characters MLflow accepts in metric, parameter and tag keys (mlflow.utils.validation).
_KEY_UNSAFE = re.compile(r"[^/\w.\- :]")
_MAX_PARAM_LENGTH = 6000


def tracking_uri(value: str | None) -> str:
    """The tracking URI `--mlflow [URI]` names, checked before any work: MLflow installed, a URI with a scheme.

    No value: MLFLOW_TRACKING_URI when set, else sqlite:///mlflow.db in the working directory.
    """
    try:
        import mlflow  # noqa: F401  (only whether it imports)
    except ImportError:
        raise DomainbenchError("--mlflow: MLflow is not installed; pip install 'domainbench[mlflow]'") from None
    if not value:
        return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    # The value is optional, so `compare --mlflow BASE NEW` would take BASE for it: a path is refused.
    if not (_SCHEME.match(value) or value == "databricks"):
        raise DomainbenchError(f"--mlflow {value}: expected a tracking URI such as sqlite:///mlflow.db, file:./mlruns "
                               "or http://HOST:5000 (the value is optional: write --mlflow=URI, or put --mlflow last)")
    return value


def log_run(run_dir: Path, uri: str) -> str:
    """Log a reported run (its result files, summary and report) as a parent run with a child per configuration."""
    run_dir = Path(run_dir)
    if not (run_dir / SUMMARY_JSON).is_file() or not (run_dir / REPORT_MD).is_file():
        raise DomainbenchError(f"{run_dir}: no report to log; run `domainbench report {run_dir}` first")
    results = load_run_results(run_dir)
    resolved = _run_yaml(run_dir)
    summary = json.loads((run_dir / SUMMARY_JSON).read_text(encoding="utf-8"))
    suite = str(results[0].suite.get("name"))
    with _tracking(uri) as client:
        experiment = _experiment(client, suite)
        with _mlflow_run(client, experiment, run_name(run_dir, results), kind="run") as parent:
            _log(client, parent, params=_run_params(results, resolved), tags={
                "domainbench.run_dir": str(run_dir.resolve()), "mlflow.note.content": _recommendations(summary),
                **{f"version.{name}": version for name, version in results[0].versions.items()}})
            for name in (REPORT_MD, REPORT_HTML, SUMMARY_JSON, SUMMARY_CSV, "run.yaml"):
                if (run_dir / name).is_file():
                    client.log_artifact(parent, str(run_dir / name))
            if (run_dir / PLOTS_DIR).is_dir():
                client.log_artifacts(parent, str(run_dir / PLOTS_DIR), PLOTS_DIR)
            for configuration in dict.fromkeys(r.configuration for r in results):
                mine = [r for r in results if r.configuration == configuration]
                with _mlflow_run(client, experiment, configuration, kind="configuration", parent=parent) as child:
                    _log(client, child, params=_configuration_params(mine, resolved),
                         metrics=_quality_metrics(mine) + _cost_metrics(summary["costs"].get(configuration, {})),
                         tags={"domainbench.best": ", ".join(_stars(summary, configuration)) or "none"})
    _announce(uri, f"run {run_name(run_dir, results)}", parent)
    return parent


def log_comparison(comparison: Comparison, uri: str) -> str:
    """Log one `compare` outcome: settings, each change's Δ with its interval and p, each verdict, the table."""
    markdown = render_comparison(comparison)
    with _tracking(uri) as client:
        name = f"compare {comparison.base_run} -> {comparison.new_run}"
        with _mlflow_run(client, _experiment(client, comparison.suite), name, kind="compare") as run_id:
            gate = {"gate/regressions": len(comparison.regressions), "gate/undecided": len(comparison.undecided),
                    "gate/family_size": comparison.family_size, "gate/passed": int(not comparison.regressions)}
            metrics = _metrics(gate)
            for change in comparison.changes:
                key = f"{change.configuration}/{change.task}/{change.metric}"
                metrics += _metrics(_change_figures(change), prefix=key)
            _log(client, run_id, params=_comparison_params(comparison), metrics=metrics, tags={
                "domainbench.headline": headline(comparison), "mlflow.note.content": markdown,
                **{f"verdict.{c.configuration}/{c.task}/{c.metric}": _verdict(c) for c in comparison.changes}})
            client.log_text(run_id, markdown, "compare.md")
            client.log_dict(run_id, {"headline": headline(comparison), "notes": comparison.notes,
                                     "changes": [_change_record(c) for c in comparison.changes]}, "verdicts.json")
    _announce(uri, name, run_id)
    return run_id


def _comparison_params(comparison: Comparison) -> dict:
    settings = comparison.settings
    return {"base_run": comparison.base_run, "new_run": comparison.new_run, "suite": comparison.suite,
            "semantics": settings.semantics, "correction": settings.correction, "alpha": settings.alpha,
            "family_size": comparison.family_size, **{f"max_drop.{c.metric}": c.tolerance for c in comparison.changes}}


class CanaryRound(Protocol):
    """What a monitor round (serve.monitor.MonitorRound) offers to be logged."""

    started: str
    changes: list[MetricChange]
    notes: list[str]
    requests: int
    errors: int
    error_rate: float
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None


class MonitorTracking:
    """An open MLflow run for one `monitor` watch; `observe` logs each round as the next step.

    MLflow's errors become DomainbenchErrors in `monitor_tracking`, whose block the rounds run in.
    """

    def __init__(self, client, run_id: str):
        self.client, self.run_id, self.step = client, run_id, 0

    def observe(self, round_: CanaryRound, problems: list[str], *, parity: bool) -> None:
        figures = {"round/passed": int(not problems), "round/parity_check": int(parity),
                   "round/requests": round_.requests, "round/errors": round_.errors,
                   "round/error_rate": round_.error_rate, "round/latency_p50_seconds": round_.latency_p50_seconds,
                   "round/latency_p95_seconds": round_.latency_p95_seconds}
        metrics = _metrics(figures, step=self.step)
        for change in round_.changes:
            metrics += _metrics(_change_figures(change, "baseline", "served"), prefix=f"{change.task}/{change.metric}",
                                step=self.step)
        _log(self.client, self.run_id, metrics=metrics, tags={"domainbench.verdict": "fail" if problems else "pass"})
        self.client.log_dict(self.run_id, {"step": self.step, "started": round_.started, "parity_check": parity,
                                           "problems": problems, "notes": round_.notes,
                                           "changes": [_change_record(c) for c in round_.changes]},
                             f"rounds/{self.step:05d}.json")
        self.step += 1


@contextlib.contextmanager
def monitor_tracking(uri: str, *, suite: str, endpoint: str, baseline: str, configuration: str,
                     params: dict) -> Iterator[MonitorTracking]:
    """One MLflow run for a `monitor` watch, open while it watches; `params` are the watch's settings."""
    with _tracking(uri) as client:
        name = f"monitor {endpoint} ({configuration})"
        with _mlflow_run(client, _experiment(client, suite), name, kind="monitor") as run_id:
            _log(client, run_id, params={"endpoint": endpoint, "baseline": baseline, "configuration": configuration,
                                         "suite": suite, **params})
            _announce(uri, name, run_id)
            yield MonitorTracking(client, run_id)


# --- what a run logs ---------------------------------------------------------------------------------

def _run_yaml(run_dir: Path) -> dict:
    path = run_dir / "run.yaml"
    resolved = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    return resolved if isinstance(resolved, dict) else {}


def _run_params(results: list[ResultFile], resolved: dict) -> dict:
    spec = resolved.get("spec") if isinstance(resolved.get("spec"), dict) else {}
    first = results[0]
    return {"suite": first.suite.get("name"), "suite_fingerprint": first.suite.get("fingerprint"),
            "model": spec.get("model", first.model.get("spec")), "profile": resolved.get("profile"),
            "device": resolved.get("device"), "limit_per_task": resolved.get("limit_per_task"),
            "seed": spec.get("seed"), "num_fewshot": spec.get("num_fewshot"),
            "configurations": ",".join(dict.fromkeys(r.configuration for r in results)),
            "tasks": ",".join(dict.fromkeys(r.task for r in results)),
            **{f"task_fingerprint.{r.task}": r.suite.get("task_fingerprint") for r in results}}


def _configuration_params(results: list[ResultFile], resolved: dict) -> dict:
    """The configuration's model and artifact fingerprints, retrieval settings and each tuned artifact's recipe."""
    first = results[0]
    params = {"configuration": first.configuration, **{f"model.{key}": value for key, value in first.model.items()}}
    rag = next((r.settings["rag"] for r in results if isinstance(r.settings.get("rag"), dict)
                and r.settings["rag"].get("mode") != "off"), None)
    params.update(_flat(rag or {}, "rag"))
    return {**params, **_recipes(first, resolved)}


def _recipes(result: ResultFile, resolved: dict) -> dict:
    """`recipe.<strategy>.…` of each run.yaml artifact this configuration's model, adapter or index was built as."""
    used = {result.model.get(key) for key in ("fingerprint", "adapter_fingerprint", "index_fingerprint")} - {None}
    recipe_files = (resolved.get("spec") or {}).get("recipes") or {}
    params = {}
    for section in ("weights", "adapters", "forms", "index"):
        artifacts = resolved.get(section) or {}
        for artifact in ([artifacts] if section == "index" else artifacts.values()):
            if not isinstance(artifact, dict) or artifact.get("fingerprint") not in used:
                continue
            try:
                manifest = read_manifest(artifact["path"])
            except (DomainbenchError, OSError):
                continue  # a base model's directory has no manifest; a cleared cache has none either
            if isinstance(manifest.get("recipe"), dict):
                strategy = str(manifest.get("strategy", section))
                params[f"recipe.{strategy}.file"] = recipe_files.get(strategy, "defaults")
                params.update(_flat(manifest["recipe"], f"recipe.{strategy}"))
    return params


def _quality_metrics(results: list[ResultFile]) -> list:
    metrics = []
    for result in results:
        for name, cell in result.metrics.items():
            metrics += _metrics({"": cell.get("value"), "/ci_low": cell.get("ci_low"), "/ci_high": cell.get("ci_high"),
                                 "/n": cell.get("n")}, prefix=f"{result.task}/{name}")
    return metrics


def _cost_metrics(cost: dict) -> list:
    return _metrics({f"cost/{key}": value for key, value in cost.items() if key not in ("configuration", "items")})


def _stars(summary: dict, configuration: str) -> list[str]:
    """`task/metric` of every metric where the report marks this configuration ★."""
    return [f"{table['task']}/{metric}" for table in summary["tables"]
            for metric, cell in table["cells"].get(configuration, {}).items() if cell.get("best")]


def _recommendations(summary: dict) -> str:
    sentences = [Recommendation(**record).sentence() for record in summary["recommendations"]]
    return "\n".join(f"- {sentence}" for sentence in sentences) + f"\n\n{CHEAPEST_NOTE}\n"


# --- what a change logs (compare and monitor) ------------------------------------------------------

def _change_figures(change: MetricChange, base: str = "base", new: str = "new") -> dict:
    """Both sides, Δ with its interval, p before and after the family's correction (compare's words by default)."""
    difference = change.difference
    figures = {f"/{base}": change.base, f"/{new}": change.new,
               "/difference": difference.difference if difference else change.new - change.base}
    if difference is not None:
        figures.update({"/ci_low": difference.ci_low, "/ci_high": difference.ci_high, "/p_value": difference.p_value,
                        "/p_adjusted": change.p_adjusted, "/n": difference.n})
    return figures


def _verdict(change: MetricChange) -> str:
    reason = change.decision.reason if change.decision and change.decision.reason else ""
    return f"{change.verdict} ({reason})" if reason else change.verdict


def _change_record(change: MetricChange) -> dict:
    figures = {key.lstrip("/"): value for key, value in _change_figures(change).items()}
    return {"configuration": change.configuration, "task": change.task, "metric": change.metric,
            "tolerance": change.tolerance, **figures, "verdict": change.verdict, "fails": change.fails,
            "reason": change.decision.reason if change.decision else None}


# --- MLflow plumbing --------------------------------------------------------------------------------

@contextlib.contextmanager
def _tracking(uri: str):
    """An MlflowClient on `uri`; MLflow's errors become one line naming the URI."""
    from mlflow import MlflowClient

    # MLflow prints a run's URL to stdout when it ends on a server; stdout carries compare's Markdown,
    # and `_announce` says where the run went on stderr instead.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    with _mlflow_errors(uri):
        yield MlflowClient(tracking_uri=uri)


@contextlib.contextmanager
def _mlflow_errors(uri: str):
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise DomainbenchError(f"--mlflow {uri}: {str(exc.message).splitlines()[0]}") from exc


def _experiment(client, suite: str) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"domainbench-{suite}"
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name)
    if experiment.lifecycle_stage == "deleted":
        raise DomainbenchError(f"MLflow experiment {name!r} is deleted: restore it (mlflow experiments restore) or "
                               "set MLFLOW_EXPERIMENT_NAME")
    return experiment.experiment_id


@contextlib.contextmanager
def _mlflow_run(client, experiment_id: str, name: str, *, kind: str, parent: str | None = None) -> Iterator[str]:
    """A run that ends FINISHED, or KILLED on Ctrl-C, or FAILED when the command failed; yields its id.

    A `monitor` that stops on a failing round exits 1 through here: its watch finished, and found that.
    """
    tags = {"domainbench.kind": kind, **({"mlflow.parentRunId": parent} if parent else {})}
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except SystemExit as exc:
        status = "FINISHED" if exc.code in (0, 1, None) else "FAILED"
        raise
    finally:
        client.set_terminated(run_id, status)


def _log(client, run_id: str, *, params: dict | None = None, metrics: list | None = None,
         tags: dict | None = None) -> None:
    """One batch (MLflow splits it into chunks it accepts); None values are left out."""
    from mlflow.entities import Param, RunTag

    client.log_batch(
        run_id, metrics=metrics or [],
        params=[Param(_key(k), _value(v)[:_MAX_PARAM_LENGTH]) for k, v in (params or {}).items() if v is not None],
        tags=[RunTag(_key(k), _value(v)) for k, v in (tags or {}).items() if v is not None])


def _metrics(figures: dict, *, prefix: str = "", step: int = 0) -> list:
    """MLflow Metric entities of the numbers in `figures`, keys prefixed; None values are left out."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(_key(prefix + key), float(value), now, step) for key, value in figures.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


def _flat(record: dict, prefix: str) -> dict:
    """A nested mapping as dotted keys; lists stay whole (as JSON)."""
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = value
    return flat


def _key(key: str) -> str:
    return _KEY_UNSAFE.sub("_", key)


def _value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _announce(uri: str, name: str, run_id: str) -> None:
    where = uri if uri.startswith(("http:", "https:")) else f"`mlflow ui --backend-store-uri {uri}`"
    click.echo(f"mlflow: {name} logged to {uri} (run {run_id}); see it in {where}", err=True)
