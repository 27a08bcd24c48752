"""`domainbench report | rescore | compare | leaderboard`: everything after the model has run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.options import gate_options, gate_settings, mlflow_option

# The reports are imported inside each command: plotting pulls in matplotlib, which
# `domainbench --help` and the other commands have no use for.


_RUN_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command("report")
@click.argument("run_dir", type=_RUN_DIR)
def report_command(run_dir: Path) -> None:
    """Re-render RUN_DIR's report.md, report.html, summary.json and summary.csv from its result files."""
    from reports.run_report import REPORT_HTML, REPORT_MD, write_report

    summary = write_report(run_dir)
    click.echo(f"wrote {run_dir / REPORT_MD} and {run_dir / REPORT_HTML} "
               f"({len(summary.configurations)} configurations, {len(summary.tables)} tasks)")
    for recommendation in summary.recommendations:
        click.echo(f"  {recommendation.sentence()}")


@click.command("rescore")
@click.argument("run_dir", type=_RUN_DIR)
def rescore_command(run_dir: Path) -> None:
    """Recompute every metric and interval of RUN_DIR from the stored predictions (no model), then re-render."""
    from reports.formatting import format_value
    from reports.run_report import REPORT_HTML, REPORT_MD, rescore_run, write_report

    for configuration, task, metrics in rescore_run(run_dir):
        changes = ", ".join(f"{name} {format_value(old)} -> {format_value(new)}" if old != new else f"{name} {format_value(new)}"
                            for name, (old, new) in metrics.items())
        click.echo(f"{configuration}/{task}: {changes}")
    write_report(run_dir)
    click.echo(f"re-rendered {run_dir / REPORT_MD} and {run_dir / REPORT_HTML}")


@click.command("compare")
@click.argument("base_run", type=_RUN_DIR)
@click.argument("new_run", type=_RUN_DIR, required=False)
@click.option("--forms", is_flag=True,
              help="Gate each deployable form of BASE_RUN (merged, pruned, int8, nf4, gguf) against its parent.")
@click.option("--variants", is_flag=True,
              help="Test each variant of BASE_RUN (adapter@rc, finetuned@synthetic-qa) against its plain "
                   "configuration.")
@click.option("--max-drop", multiple=True, metavar="METRIC=TOL",
              help="Tolerated drop of a metric (repeatable), e.g. --max-drop f1=0.01; default 0.")
@click.option("--resamples", default=1000, show_default=True, help="Bootstrap resamples per interval.")
@click.option("--primary-only", is_flag=True, help="Gate each task's primary metric only (the suite's primary_metric).")
@click.option("--allow-incomplete", is_flag=True,
              help="Gate results with failed requests too, on the examples both runs scored (default: list them, "
                   "not gated).")
@gate_options
@mlflow_option
def compare_command(base_run: Path, new_run: Path | None, forms: bool, variants: bool, max_drop: tuple[str, ...],
                    resamples: int, primary_only: bool, allow_incomplete: bool, semantics: str,
                    correction: str, mlflow_uri: str | None) -> None:
    """Gate NEW_RUN against BASE_RUN (or, with --forms, each form of BASE_RUN against its parent; with
    --variants, each variant against its plain configuration).

    A Markdown table naming the family size, the correction and the semantics. Exit codes: 0 pass,
    1 a failing metric (a significant drop beyond tolerance; under non-inferiority, a metric not
    shown non-inferior), 2 unusable input (e.g. different suites, no forms), 3 nothing failed but
    some comparison cannot decide at its n.
    """
    from harness.errors import DomainbenchError
    from reports.compare import (
        compare_forms,
        compare_runs,
        compare_variants,
        parse_max_drop,
        render_comparison,
    )

    within = "--forms" if forms else "--variants" if variants else None
    if forms and variants:
        raise DomainbenchError("compare: --forms or --variants, not both")
    if (within is not None) == (new_run is not None):
        raise DomainbenchError("compare: give BASE_RUN and NEW_RUN, or one run with --forms or --variants")
    if within and primary_only:
        raise DomainbenchError(f"compare: --primary-only applies to two runs, not {within}")
    tolerances = parse_max_drop(max_drop)
    settings = gate_settings(semantics, correction)
    if forms:
        comparison = compare_forms(base_run, tolerances, n_resamples=resamples, settings=settings)
    elif variants:
        comparison = compare_variants(base_run, tolerances, n_resamples=resamples, settings=settings)
    else:
        comparison = compare_runs(base_run, new_run, tolerances, n_resamples=resamples, settings=settings,
                                  primary_only=primary_only, allow_incomplete=allow_incomplete)
    click.echo(render_comparison(comparison), nl=False)
    if mlflow_uri is not None:
        from reports.tracking import log_comparison

        log_comparison(comparison, mlflow_uri)
    if comparison.regressions:
        sys.exit(1)
    if comparison.undecided:
        sys.exit(3)


@click.command("leaderboard")
@click.argument("run_dirs", nargs=-1, required=True, type=_RUN_DIR)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory of the static site (created).")
def leaderboard_command(run_dirs: tuple[Path, ...], out_dir: Path) -> None:
    """Build a static leaderboard site (index.html, a page per run) and LEADERBOARD.md from RUN_DIRS."""
    from reports.leaderboard import LEADERBOARD_MD, build_leaderboard

    index = build_leaderboard(list(run_dirs), out_dir)
    click.echo(f"wrote {index} and {out_dir / LEADERBOARD_MD} ({len(run_dirs)} runs)")


COMMANDS = [report_command, rescore_command, compare_command, leaderboard_command]
