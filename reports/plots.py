"""The report's two plots per task, as PNG bytes: metrics with interval bars, and quality vs cost."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # reports are rendered on headless machines and in CI

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)

from reports.summary import RunSummary  # noqa: E402
from reports.tables import TaskTable  # noqa: E402
from tasks.pairing import higher_is_better  # noqa: E402

_DPI = 100


def metric_plot(table: TaskTable) -> bytes:
    """One panel per metric: each configuration's value with its 95% interval as error bars."""
    configurations = table.configurations
    figure, axes = plt.subplots(1, len(table.metrics), figsize=(3.2 * len(table.metrics) + 1, 0.45 * len(configurations) + 1.4),
                                squeeze=False)
    for axis, metric in zip(axes[0], table.metrics):
        shown = [c for c in configurations if metric in table.cells[c]]
        cells = [table.cells[c][metric] for c in shown]
        values = [cell.value for cell in cells]
        errors = [[max(0.0, cell.value - cell.ci_low) for cell in cells],
                  [max(0.0, cell.ci_high - cell.value) for cell in cells]]
        colors = ["tab:green" if cell.best else "tab:blue" for cell in cells]
        positions = range(len(shown))
        axis.errorbar(values, positions, xerr=errors, fmt="none", ecolor="gray", capsize=3)
        axis.scatter(values, positions, c=colors, zorder=3)
        axis.set_yticks(list(positions), shown if axis is axes[0][0] else [""] * len(shown))
        axis.invert_yaxis()
        axis.set_title(f"{metric} ({'higher' if higher_is_better(metric) else 'lower'} is better)", fontsize=9)
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle(f"{table.task}: metrics with 95% intervals (green: significantly best)", fontsize=10)
    return _png(figure)


def quality_cost_plot(table: TaskTable, summary: RunSummary) -> bytes | None:
    """Headline metric against compute seconds (training + evaluation), Pareto front drawn.

    A configuration that did not converge is drawn grey and kept off the front: it is not ranked.
    None when no configuration has a recorded cost.
    """
    metric = table.headline
    points = []
    for config in table.configurations:
        seconds = summary.costs[config].compute_seconds(table.n_examples[config])
        if seconds is not None and metric in table.cells[config]:
            points.append((seconds, table.cells[config][metric].value, config))
    if not points:
        return None
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for seconds, value, config in points:
        converged = summary.converged(config)
        axis.scatter([seconds], [value], color="tab:blue" if converged else "tab:gray", marker="o" if converged else "x",
                     zorder=3)
        axis.annotate(config if converged else f"{config} (did not converge)", (seconds, value),
                      textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = pareto_front([p for p in points if summary.converged(p[2])], higher_is_better(metric))
    axis.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:orange", label="Pareto front")
    if all(p[0] > 0 for p in points):
        axis.set_xscale("log")
    axis.set_xlabel("compute seconds (training + evaluation of this task)")
    axis.set_ylabel(metric)
    axis.set_title(f"{table.task}: quality vs cost", fontsize=10)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _png(figure)


def pareto_front(points: list[tuple[float, float, str]], higher_better: bool) -> list[tuple[float, float, str]]:
    """Points no other point beats on both cost (lower) and quality, in order of cost."""
    sign = 1 if higher_better else -1
    front, best_quality = [], None
    for point in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if best_quality is None or sign * point[1] > best_quality:
            front.append(point)
            best_quality = sign * point[1]
    return front


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=_DPI)
    plt.close(figure)
    return buffer.getvalue()
