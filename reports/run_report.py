"""Writing a run's report files, and rescoring its result files from the stored predictions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.atomic import write_atomic
from reports.crashes import crashes
from reports.formatting import slug
from reports.plots import metric_plot, quality_cost_plot
from reports.render_html import render_html
from reports.render_markdown import render_markdown
from reports.schema import load_result, write_result
from reports.significance import task_spec
from reports.summary import (
    SUMMARY_CSV,
    SUMMARY_JSON,
    RunSummary,
    build_summary,
    result_paths,
    summary_csv,
    summary_json,
)
from tasks.evaluate import rescore

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"


def write_report(run_dir: Path) -> RunSummary:
    """Render report.md, report.html, summary.json, summary.csv and plots/ from the result files alone."""
    run_dir = Path(run_dir)
    summary = build_summary(run_dir)
    plots = task_plots(summary)
    (run_dir / PLOTS_DIR).mkdir(exist_ok=True)
    markdown_plots: dict[str, list[tuple[str, str]]] = {}
    for task, task_plots_ in plots.items():
        for title, png in task_plots_:
            name = f"{slug(task)}-{slug(title)}.png"
            write_atomic(run_dir / PLOTS_DIR / name, png)
            markdown_plots.setdefault(task, []).append((title, f"{PLOTS_DIR}/{name}"))
    crashed = crashes(run_dir)
    write_atomic(run_dir / REPORT_MD, render_markdown(summary, markdown_plots, crashed).encode("utf-8"))
    write_atomic(run_dir / REPORT_HTML, render_html(summary, plots, crashed).encode("utf-8"))
    write_atomic(run_dir / SUMMARY_JSON, summary_json(summary).encode("utf-8"))
    write_atomic(run_dir / SUMMARY_CSV, summary_csv(summary).encode("utf-8"))
    return summary


def task_plots(summary: RunSummary) -> dict[str, list[tuple[str, bytes]]]:
    """(title, PNG) pairs per task: the metrics with intervals, then quality vs cost when costs exist."""
    plots = {}
    for table in summary.tables:
        plots[table.task] = [("metrics", metric_plot(table))]
        cost_png = quality_cost_plot(table, summary)
        if cost_png is not None:
            plots[table.task].append(("quality vs cost", cost_png))
    return plots


def rescore_run(run_dir: Path) -> list[tuple[str, str, dict[str, tuple[float, float]]]]:
    """Recompute every result file's scores and metrics from its stored predictions (no model).

    Returns (configuration, task, {metric: (old value, new value)}) per result file.
    """
    changes = []
    for path in result_paths(run_dir):
        result = load_result(path)
        records, metrics = rescore(task_spec(result), result.examples)
        fresh = dataclasses.replace(result, metrics={name: m.as_dict() for name, m in metrics.items()},
                                    examples=[record.as_dict() for record in records])
        write_result(path, fresh)
        changes.append((result.configuration, result.task,
                        {name: (result.metrics.get(name, {}).get("value"), m.value) for name, m in metrics.items()}))
    return changes


