"""Writing a run's report files, and rescoring its result files from the stored predictions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.atomic import publish_files
from harness.errors import DomainbenchError
from reports.crashes import crashes
from reports.formatting import slug
from reports.plots import metric_plot, quality_cost_plot
from reports.render_html import render_html
from reports.render_markdown import render_markdown
from reports.schema import load_result, write_result
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
from tasks.pairing import task_spec

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"


def write_report(run_dir: Path) -> RunSummary:
    """Render report.md, report.html, summary.json, summary.csv and plots/ from the result files alone.

    Everything is rendered first and then published as one set: a kill mid-render leaves the
    previous report whole, never a report.md of one render beside a summary.json of another.
    """
    run_dir = Path(run_dir)
    summary = build_summary(run_dir)
    plots = task_plots(summary)
    files: dict[str, bytes] = {}
    markdown_plots: dict[str, list[tuple[str, str]]] = {}
    for task, task_plots_ in plots.items():
        for title, png in task_plots_:
            name = f"{PLOTS_DIR}/{slug(task)}-{slug(title)}.png"
            files[name] = png
            markdown_plots.setdefault(task, []).append((title, name))
    crashed = crashes(run_dir)
    files[REPORT_MD] = render_markdown(summary, markdown_plots, crashed).encode("utf-8")
    files[REPORT_HTML] = render_html(summary, plots, crashed).encode("utf-8")
    files[SUMMARY_JSON] = summary_json(summary).encode("utf-8")
    files[SUMMARY_CSV] = summary_csv(summary).encode("utf-8")
    publish_files(run_dir, files)
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
        try:
            records, metrics = rescore(task_spec(result), result.examples)
        except (TypeError, ValueError, KeyError) as exc:
            # The stored scores are data from a file: a hand-edited one may hold anything.
            raise DomainbenchError(f"{path}: examples: stored scores cannot be rescored "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
        fresh = dataclasses.replace(result, metrics={name: m.as_dict() for name, m in metrics.items()},
                                    examples=[record.as_dict() for record in records])
        write_result(path, fresh)
        changes.append((result.configuration, result.task,
                        {name: (result.metrics.get(name, {}).get("value"), m.value) for name, m in metrics.items()}))
    return changes


