"""A static leaderboard site over several runs: index.html, a page and a report per run, LEADERBOARD.md.

Everything is self-contained (inline CSS and a few lines of inline JS to sort the table); every
piece of text from a run is escaped, so a model output can never become markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

from reports.formatting import format_interval, format_seconds, format_value, slug
from reports.load_tests import LEADERBOARD_LOAD_HEADER, leaderboard_load_cells
from reports.render_html import (
    STYLE,
    configuration_cell,
    examples_section,
    html_table,
    page,
    render_html,
    text_cell,
)
from reports.render_markdown import configuration_label, markdown_text, table
from reports.run_report import task_plots
from reports.summary import RunSummary, build_summary
from tasks.pairing import higher_is_better

LEADERBOARD_MD = "LEADERBOARD.md"
RUNS_DIR = "runs"

# Clicking a header sorts by that column (numbers by data-sort, text otherwise); again reverses.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var descending = th.dataset.order !== "desc";
    th.dataset.order = descending ? "desc" : "asc";
    var key = function (row) {
      var cell = row.cells[column];
      var number = parseFloat(cell.dataset.sort);
      return isNaN(number) ? cell.textContent.toLowerCase() : number;
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      var order = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return descending ? -order : order;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""
LEADERBOARD_STYLE = STYLE + "table.sortable th { cursor: pointer; } table.sortable th:hover { background: #e6e6e6; }\n"


@dataclass
class RunEntry:
    summary: RunSummary
    page_dir: str  # the run's folder under runs/, unique within the site


def build_leaderboard(run_dirs: list[Path], out_dir: Path) -> Path:
    """Write the site into `out_dir`; returns the path of index.html."""
    out_dir = Path(out_dir)
    entries = _entries([build_summary(run_dir) for run_dir in run_dirs])
    for entry in entries:
        run_dir = out_dir / RUNS_DIR / entry.page_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "report.html").write_text(render_html(entry.summary, task_plots(entry.summary)), encoding="utf-8")
        (run_dir / "index.html").write_text(run_page(entry.summary), encoding="utf-8")
    columns = leaderboard_columns(entries)
    index = out_dir / "index.html"
    index.write_text(index_page(entries, columns), encoding="utf-8")
    (out_dir / LEADERBOARD_MD).write_text(leaderboard_markdown(entries, columns), encoding="utf-8")
    return index


def _entries(summaries: list[RunSummary]) -> list[RunEntry]:
    entries, taken = [], set()
    for summary in summaries:
        name, suffix = slug(summary.run), 2
        while name in taken:
            name, suffix = f"{slug(summary.run)}-{suffix}", suffix + 1
        taken.add(name)
        entries.append(RunEntry(summary, name))
    return entries


def leaderboard_columns(entries: list[RunEntry]) -> list[tuple[str, str]]:
    """(task, headline metric) pairs over all runs, in first-seen order."""
    columns = {}
    for entry in entries:
        for task_table in entry.summary.tables:
            columns.setdefault((task_table.task, task_table.headline), None)
    return list(columns)


def leaderboard_rows(entries: list[RunEntry], columns: list[tuple[str, str]]):
    """(entry, configuration, {column: MetricCell or None}) for each run's configurations."""
    for entry in entries:
        tables = {t.task: t for t in entry.summary.tables}
        for configuration in entry.summary.configurations:
            cells = {}
            for task, metric in columns:
                task_table = tables.get(task)
                cells[(task, metric)] = (task_table.cells.get(configuration, {}).get(metric) if task_table else None)
            yield entry, configuration, cells


def _sort_cell(text: str, sort_key: float | None) -> str:
    attribute = "" if sort_key is None else f' data-sort="{sort_key!r}"'
    return f'<td class="num"{attribute}>{escape(text)}</td>'


def has_load_tests(entries: list[RunEntry]) -> bool:
    """Whether any run has a load test attached: only then does the leaderboard show serving columns."""
    return any(entry.summary.load_tests for entry in entries)


def load_cells(entry: RunEntry, configuration: str) -> list[tuple[str, float | None]]:
    return leaderboard_load_cells(entry.summary.load_tests.get(configuration))


def index_page(entries: list[RunEntry], columns: list[tuple[str, str]]) -> str:
    serving = has_load_tests(entries)
    header = ["run", "suite", "configuration", *(f"{task}: {metric}" for task, metric in columns),
              *(LEADERBOARD_LOAD_HEADER if serving else ()), "training time", "eval latency / example"]
    rows = []
    for entry, configuration, cells in leaderboard_rows(entries, columns):
        cost = entry.summary.costs[configuration]
        link = f'<td><a href="{RUNS_DIR}/{escape(entry.page_dir)}/index.html">{escape(entry.summary.run)}</a></td>'
        metric_tds = [_sort_cell("—", None) if cell is None else
                      _sort_cell(f"{format_value(cell.value)} {format_interval(cell.ci_low, cell.ci_high)}",
                                 cell.value if higher_is_better(metric) else -cell.value)
                      for (_, metric), cell in cells.items()]
        rows.append([link, text_cell(entry.summary.suite.get("name") or "?"),
                     configuration_cell(entry.summary, configuration), *metric_tds,
                     *(_sort_cell(text, key) for text, key in (load_cells(entry, configuration) if serving else [])),
                     _sort_cell(format_seconds(cost.training_seconds), cost.training_seconds),
                     _sort_cell(format_seconds(cost.eval_seconds_per_example), cost.eval_seconds_per_example)])
    body = ("<h1>domainbench leaderboard</h1>\n<p class='note'>One row per run and configuration; each task shows "
            "its headline metric with the 95% bootstrap interval; where a load test is attached, the p95 latency "
            "and output tokens/s of its busiest level stand beside. Click a column to sort (metric and serving "
            "columns sort best first).</p>\n" + html_table(header, rows, table_id="leaderboard").replace("<table", '<table class="sortable"', 1))
    return page("domainbench leaderboard", body, style=LEADERBOARD_STYLE, script=SORT_SCRIPT)


def run_page(summary: RunSummary) -> str:
    recommendations = "".join(f"<li>{escape(rec.sentence())}</li>" for rec in summary.recommendations)
    body = "\n".join([
        f"<h1>run {escape(summary.run)}</h1>",
        f"<p>Suite <b>{escape(str(summary.suite.get('name') or '?'))}</b>; configurations: "
        f"{escape(', '.join(summary.configurations))}. <a href='report.html'>Full report</a> · "
        "<a href='../../index.html'>Leaderboard</a></p>",
        "<h2>Recommendation</h2>", f"<ul>{recommendations}</ul>", examples_section(summary)])
    return page(f"run {summary.run}", body)


def leaderboard_markdown(entries: list[RunEntry], columns: list[tuple[str, str]]) -> str:
    serving = has_load_tests(entries)
    header = ["run", "suite", "configuration", *(markdown_text(f"{task}: {metric}") for task, metric in columns),
              *(LEADERBOARD_LOAD_HEADER if serving else ())]
    rows = [[f"[{markdown_text(entry.summary.run)}]({RUNS_DIR}/{entry.page_dir}/index.html)",
             markdown_text(entry.summary.suite.get("name") or "?"), configuration_label(entry.summary, configuration),
             *("—" if cell is None else f"{format_value(cell.value)} {format_interval(cell.ci_low, cell.ci_high)}"
               for cell in cells.values()),
             *(markdown_text(text) for text, _ in (load_cells(entry, configuration) if serving else []))]
            for entry, configuration, cells in leaderboard_rows(entries, columns)]
    serving_note = (" Where a load test is attached, the p95 latency and output tokens/s of its busiest level stand "
                    "beside." if serving else "")
    return ("# domainbench leaderboard\n\nEach task shows its headline metric with the 95% bootstrap interval."
            + serving_note + "\n\n" + table(header, rows) + "\n")
