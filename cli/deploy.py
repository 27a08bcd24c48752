"""`domainbench loadtest` and `domainbench monitor`: how fast and reliable a served model is, and
whether it still scores what its baseline run scored."""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click
from click.core import ParameterSource
from rich.console import Console
from rich.table import Table

from cli.options import gate_options, gate_settings, mlflow_option, task_list
from harness.errors import DomainbenchError

if TYPE_CHECKING:
    from engines.openai_api import OpenAIEngine
    from reports.tracking import MonitorTracking
    from serve.metrics import MonitorMetrics


def _levels(value: str) -> list[int]:
    try:
        levels = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise DomainbenchError(f"--concurrency {value!r}: expected comma-separated positive integers, e.g. 1,8")
    return levels


def _rates(value: str) -> list[float]:
    try:
        rates = [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        rates = []
    if not rates or not all(0 < rate < float("inf") for rate in rates):
        raise DomainbenchError(f"--rate {value!r}: expected comma-separated positive requests per second, e.g. 0.5,2")
    return rates


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 200)


@click.command("loadtest")
@click.argument("endpoint_spec", metavar="ENDPOINT")
@click.option("--suite", "suite_spec", required=True, help="Builtin suite name or suite dir whose prompts to replay.")
@click.option("--tasks", "task_names", default=None, help="Comma-separated task names (default: all).")
@click.option("--concurrency", "concurrency_levels", default="1,8", show_default=True,
              help="Comma-separated concurrency levels: requests in flight (closed loop).")
@click.option("--rate", "rate_levels", default=None,
              help="Comma-separated request rates per second, sent whatever the server's pace (open loop), "
                   "instead of concurrency levels.")
@click.option("--arrivals", type=click.Choice(["poisson", "constant"]), default="poisson", show_default=True,
              help="With --rate: Poisson arrival times (seeded by --seed) or evenly spaced ones.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --rate: seed of the Poisson arrival times.")
@click.option("--requests", "n_requests", type=int, default=32, show_default=True,
              help="Requests per level (the suite's prompts, cycled).")
@click.option("--warmup", "n_warmup", type=int, default=0, show_default=True,
              help="Requests sent one at a time before the first level and left out of every figure "
                   "(a server's first requests may pay for loading, compiling or packing weights).")
@click.option("--max-tokens", type=int, default=32, show_default=True, help="Tokens generated per request at most.")
@click.option("--tokenizer", "tokenizer_spec", default=None,
              help="A model spec whose chat template the prompts go through, as with `eval --tokenizer`.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per request.")
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Result file, replaced if it exists (default: a new runs/loadtest-<suite>-<host>-<time>.json).")
@click.option("--run", "run_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Attach the result to this run (RUN/serving/<configuration>.json), shown by its report and "
                   "the leaderboard beside quality; needs --configuration.")
@click.option("--configuration", default=None, help="With --run: the run's configuration ENDPOINT serves.")
@click.pass_context
def loadtest_command(ctx: click.Context, endpoint_spec: str, suite_spec: str, task_names: str | None,
                     concurrency_levels: str, rate_levels: str | None, arrivals: str, seed: int, n_requests: int,
                     n_warmup: int, max_tokens: int, tokenizer_spec: str | None, timeout: float, out_path: Path | None,
                     run_dir: Path | None, configuration: str | None) -> None:
    """Replay SUITE's generation prompts on ENDPOINT at each concurrency or rate; latency, TTFT, throughput, errors."""
    from serve.loadtest import loadtest_record, run_levels, suite_prompts, write_loadtest
    from serve.watch import connect_endpoint
    from tasks.suite import load_suite

    if rate_levels is not None and ctx.get_parameter_source("concurrency_levels") is not ParameterSource.DEFAULT:
        raise DomainbenchError("loadtest: give --concurrency (closed loop) or --rate (open loop), not both")
    levels = _levels(concurrency_levels) if rate_levels is None else _rates(rate_levels)
    if n_requests < 1 or max_tokens < 1 or n_warmup < 0:
        raise DomainbenchError("--requests and --max-tokens: expected positive numbers; --warmup: 0 or more")
    attached = _attached_path(run_dir, configuration, out_path)
    engine = connect_endpoint(endpoint_spec, tokenizer_spec, timeout=timeout)
    try:
        _check_serves(engine, configuration)
        suite = load_suite(suite_spec)
        tasks = task_list(task_names)
        prompts = suite_prompts(suite, tasks, engine)
        if not prompts:
            raise DomainbenchError(f"suite {suite.name}: no generation prompts in "
                                   f"{', '.join(tasks) if tasks else 'any task'} to replay")
        results = run_levels(engine, prompts, levels, open_loop=rate_levels is not None, arrivals=arrivals, seed=seed,
                             n_requests=n_requests, n_warmup=n_warmup, max_tokens=max_tokens, timeout=timeout)
        record = loadtest_record(engine, suite.name, tasks, max_tokens, results, configuration=configuration,
                                 arrival_seed=None if rate_levels is None else seed, warmup_requests=n_warmup)
    finally:
        engine.close()
    path = write_loadtest(attached or out_path or _new_loadtest_path(suite.name, record["endpoint"]), record)
    click.echo(f"wrote {path}" + (f" (shown by `domainbench report {run_dir}`)" if attached else ""), err=True)
    _console().print(_loadtest_table(record, results))


def _new_loadtest_path(suite: str, endpoint: str) -> Path:
    """runs/loadtest-<suite>-<host>-<time>.json, a name no earlier load test has: a rerun keeps the figures it is
    compared with."""
    host = urlsplit(endpoint).netloc.replace(":", "-")
    stem = f"loadtest-{suite}-{host}-{time.strftime('%Y%m%dT%H%M%S')}"
    path, copy = Path("runs") / f"{stem}.json", 1
    while path.exists():
        copy += 1
        path = path.with_name(f"{stem}-{copy}.json")
    return path


def _attached_path(run_dir: Path | None, configuration: str | None, out_path: Path | None) -> Path | None:
    """Where an attached result goes (RUN/serving/<configuration>.json), checked before any work; None if not attached."""
    from reports.load_tests import load_test_path
    from reports.schema import RESULTS_DIR

    if run_dir is None:
        if configuration is not None:
            raise DomainbenchError("loadtest: --configuration names a run's configuration; it goes with --run RUN_DIR")
        return None
    if configuration is None:
        raise DomainbenchError(f"loadtest --run {run_dir}: --configuration is required (which one ENDPOINT serves)")
    if out_path is not None:
        raise DomainbenchError("loadtest: give --out or --run, not both (an attached result lives in the run)")
    if not (run_dir / RESULTS_DIR / configuration).is_dir():
        raise DomainbenchError(f"loadtest --run {run_dir}: no results for configuration {configuration!r} "
                               f"(expected {run_dir / RESULTS_DIR / configuration})")
    return load_test_path(run_dir, configuration)


def _check_serves(engine: OpenAIEngine, configuration: str | None) -> None:
    """Refuse to attach figures to a configuration when the endpoint says it serves another one."""
    served = engine.client.model_info.get("configuration")
    if configuration is not None and served is not None and served != configuration:
        raise DomainbenchError(f"endpoint {engine.client.endpoint.url} serves configuration {served!r}, "
                               f"not --configuration {configuration!r}")


def _loadtest_table(record: dict, results: list) -> Table:
    served = ", ".join(str(part) for part in (record["served_model"], record["engine"]) if part)
    table = Table(title=f"load test: {record['endpoint']} ({served}) with {record['suite']} prompts, "
                        f"max {record['max_tokens']} tokens")
    for column in ("load", "requests", "errors", "latency p50 s", "p95 s", "p99 s", "TTFT p50 s", "TTFT p95 s",
                   "output tok/s", "req/s"):
        table.add_column(column, justify="right")
    for level in results:
        table.add_row(level.label, str(level.requests), f"{level.errors} ({level.error_rate:.0%})",
                      _seconds(level.latency_p50_seconds), _seconds(level.latency_p95_seconds),
                      _seconds(level.latency_p99_seconds), _seconds(level.ttft_p50_seconds),
                      _seconds(level.ttft_p95_seconds), f"{level.output_tokens_per_second:.1f}",
                      f"{level.requests_per_second:.2f}")
    return table


@click.command("monitor")
@click.argument("endpoint_spec", metavar="ENDPOINT")
@click.option("--baseline", "baseline_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="The approved run dir whose examples and scores the endpoint is held to.")
@click.option("--configuration", default="base", show_default=True, help="Which of the baseline's configurations.")
@click.option("--suite", "suite_spec", default=None,
              help="Builtin suite name or suite dir (default: the suite the baseline names).")
@click.option("--tasks", "task_names", default=None, help="Comma-separated task names (default: all the baseline's).")
@click.option("--sample", type=int, default=None,
              help="Canary examples per task per round (default: sized by --detect, at most what the baseline scored).")
@click.option("--detect", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True,
              help="The smallest drop of each task's primary metric the canary should find 4 times in 5: that much on "
                   "0-1 metrics, that share of the value on perplexity; sizes the default --sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the canary sample.")
@click.option("--every", type=float, default=None, help="Seconds between rounds (runs until a round fails).")
@click.option("--once", is_flag=True, help="One round, then exit 0 (pass) or 1 (fail): for CI.")
@click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False), default=Path("monitor.sqlite"),
              show_default=True, help="SQLite time series the rounds are appended to.")
@click.option("--max-error-rate", type=float, default=0.05, show_default=True, help="Fail above this request error rate.")
@click.option("--max-p95", type=float, default=None, help="Fail above this p95 request latency (seconds).")
@click.option("--max-drop", multiple=True, help="Tolerated drop per metric, e.g. --max-drop f1=0.02 (default 0).")
@click.option("--tokenizer", "tokenizer_spec", default=None,
              help="The served model's tokenizer (default: the one the baseline's endpoint eval used, else the "
                   "baseline's model).")
@click.option("--concurrency", type=int, default=4, show_default=True, help="Requests in flight.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per request attempt.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Expose the latest round (quality against the baseline, latency, error rate) and rounds by verdict "
                   "as Prometheus metrics on this port while watching.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics port binds.")
@click.option("--traces", "traces_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The trace store `serve --traces` writes: each round also reports the satisfaction rate of the "
                   "ratings given since the last round, with its interval, and fails on a significant drop against "
                   "the previous window or the first.")
@gate_options
@mlflow_option
def monitor_command(endpoint_spec: str, baseline_dir: Path, configuration: str, suite_spec: str | None,
                    task_names: str | None, sample: int | None, detect: float, seed: int, every: float | None,
                    once: bool, db_path: Path, max_error_rate: float, max_p95: float | None,
                    max_drop: tuple[str, ...], tokenizer_spec: str | None, concurrency: int, timeout: float,
                    metrics_port: int | None, metrics_host: str, traces_path: Path | None, semantics: str,
                    correction: str, mlflow_uri: str | None) -> None:
    """Replay a seeded canary sample of BASELINE's examples on ENDPOINT; exit 1 when quality, errors or p95 fail."""
    from reports.compare import parse_max_drop
    from serve.metrics import MonitorMetrics
    from serve.monitor import baseline_results, canary_size
    from serve.watch import Watch, baseline_tokenizer, connect_endpoint
    from tasks.suite import load_suite

    if once == (every is not None):
        raise DomainbenchError("monitor: give exactly one of --once and --every SECONDS")
    if (sample is not None and sample < 1) or (every is not None and every <= 0):
        raise DomainbenchError("--sample and --every: expected positive numbers")
    tolerances = parse_max_drop(max_drop)
    if traces_path is not None:
        from serve.traces import ratings_between

        ratings_between(traces_path, 0, 0)  # a missing or foreign store is one line, before any work
    engine = connect_endpoint(endpoint_spec, concurrency=concurrency, timeout=timeout)
    try:
        baseline = baseline_results(baseline_dir, configuration, task_list(task_names))
        suite = load_suite(suite_spec or baseline[0].suite["name"])
        sample = sample or canary_size(baseline, detect)
        settings = gate_settings(semantics, correction)
        engine.tokenizer = baseline_tokenizer(tokenizer_spec, baseline[0])
        metrics = MonitorMetrics(endpoint=engine.client.endpoint.url, baseline=str(baseline_dir.resolve()),
                                 configuration=configuration)
        watch = Watch(baseline_dir, endpoint_spec, sample=sample, seed=seed, db_path=db_path, max_drop=tolerances,
                      max_error_rate=max_error_rate, max_p95=max_p95, settings=settings, traces=traces_path)
        tracked = _tracked(mlflow_uri, suite.name, engine, baseline_dir, configuration, sample=sample, seed=seed,
                           max_drop=tolerances, max_error_rate=max_error_rate, max_p95=max_p95, settings=settings)
        with metrics.exposed(metrics_host, metrics_port) if metrics_port is not None else nullcontext(), \
                tracked as tracking:
            if metrics_port is not None:
                click.echo(f"metrics at http://{metrics_host}:{metrics_port}/metrics", err=True)
            while True:
                if not _watch_once(engine, suite, baseline, watch, metrics=metrics, tracking=tracking):
                    sys.exit(1)
                if once:
                    return
                time.sleep(every)
    finally:
        engine.close()


def _tracked(mlflow_uri: str | None, suite: str, engine: OpenAIEngine, baseline_dir: Path, configuration: str, *,
             max_drop: dict[str, float], settings, **watch):
    """The MLflow run the rounds are logged to with --mlflow (the watch's settings as its parameters), else nothing."""
    if mlflow_uri is None:
        return nullcontext()
    from reports.tracking import monitor_tracking

    return monitor_tracking(mlflow_uri, suite=suite, endpoint=engine.client.endpoint.url,
                            baseline=str(baseline_dir.resolve()), configuration=configuration,
                            params={**watch, "semantics": settings.semantics, "correction": settings.correction,
                                    **{f"max_drop.{metric}": drop for metric, drop in max_drop.items()}})


def _watch_once(engine: OpenAIEngine, suite, baseline: list, watch, *, metrics: MonitorMetrics,
                tracking: MonitorTracking | None) -> bool:
    """One round (serve/watch.py), its findings printed; whether it passed."""
    from serve.watch import watch_round

    watched = watch_round(engine, suite, baseline, watch, metrics=metrics, tracking=tracking)
    _console().print(_round_table(watched, engine.client.endpoint.url, watch.baseline_dir, baseline[0].configuration))
    _print_round_lines(watched, watch, baseline)
    return watched.passed


def _round_table(watched, url: str, baseline_dir: Path, configuration: str) -> Table:
    round_ = watched.round
    kind = "parity check (first round): served vs offline" if watched.parity else "canary round"
    table = Table(title=f"{kind} — {url} against {baseline_dir} ({configuration}), {round_.started}")
    for column in ("task", "metric", "n (differ)", "baseline", "served", "difference", "p", "p adj.", "verdict"):
        table.add_column(column, justify="left" if column in ("task", "metric", "verdict") else "right")
    for change in round_.changes:
        difference = change.difference
        table.add_row(change.task, change.metric, f"{difference.n} ({difference.n_differing})" if difference else "-",
                      f"{change.base:.4g}", f"{change.new:.4g}", f"{difference.difference:+.4g}" if difference else "-",
                      f"{difference.p_value:.3g}" if difference else "-",
                      f"{change.p_adjusted:.3g}" if change.p_adjusted is not None else "-",
                      f"{change.verdict} ({change.decision.reason})" if change.decision and change.decision.reason
                      else change.verdict)
    return table


def _print_round_lines(watched, watch, baseline: list) -> None:
    """The gate's sentence, what the sample could detect, the round's figures, satisfaction and the verdict."""
    from reports.changes import family_size
    from serve.monitor import detectable_drops

    round_ = watched.round
    click.echo(watch.settings.sentence(family_size(round_.changes)))
    for task, (metric, drop) in detectable_drops(baseline, watch.sample).items():
        click.echo(f"{task}: at n = {watch.sample} a drop in {metric} smaller than about {drop:.3g} would be "
                   "detected less than 80% of the time")
    for note in round_.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"requests {round_.requests}, errors {round_.errors} ({round_.error_rate:.1%}), latency p50 "
               f"{_seconds(round_.latency_p50_seconds)} s, p95 {_seconds(round_.latency_p95_seconds)} s; "
               f"stored in {watch.db_path}")
    if watched.satisfaction is not None:
        click.echo(watched.satisfaction.sentence())
    click.echo("verdict: " + ("FAIL: " + "; ".join(watched.problems) if watched.problems else "pass"))


COMMANDS = [loadtest_command, monitor_command]
