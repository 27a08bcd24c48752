"""report.html: one self-contained page — inline CSS, plots as base64 PNG, no external assets.

Every piece of text goes through `html.escape` (model output is untrusted and must stay text);
the page carries no script at all.
"""

from __future__ import annotations

import base64
from html import escape
from urllib.parse import quote

from reports.costs import data_cards
from reports.crashes import CRASHED_HEADER, CRASHED_NOTE
from reports.failures import DEGENERATE_THRESHOLD, NOT_CONVERGED, degenerate_callouts
from reports.formatting import (
    COST_HEADER,
    MISSING,
    cost_rows,
    format_interval,
    format_value,
)
from reports.load_tests import LOAD_HEADER, load_note, load_rows
from reports.parity import (
    CHANGES_HEADER,
    FORMS_NOTE,
    SAVINGS_HEADER,
    SERVING_HEADER,
    change_rows,
    headline,
    savings_rows,
    serving_row,
)
from reports.summary import CHEAPEST_NOTE, RunSummary
from reports.tables import TaskTable

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { background: #e3f5e1; font-weight: bold; }
.ci { color: #666; font-weight: normal; font-size: .9em; }
pre.output { margin: 0; white-space: pre-wrap; word-break: break-word; max-width: 28em; font-size: .85em; }
img { max-width: 100%; display: block; margin: .5em 0; }
.note { color: #555; }
.flag { color: #a40; font-weight: bold; font-size: .9em; } tr.item td { color: #555; }
"""


def page(title: str, body: str, *, style: str = STYLE, script: str = "") -> str:
    """A complete HTML document; `title` is escaped here, `body` must already be safe markup."""
    script_tag = f"<script>{script}</script>" if script else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{style}</style></head>\n"
            f"<body>\n{body}\n{script_tag}</body></html>\n")


def html_table(header: list[str], rows: list[list[str]], *, table_id: str = "",
               row_classes: list[str] | None = None) -> str:
    """A table from already-safe cell markup (`<td …>` included) and escaped-here header text."""
    id_attribute = f' id="{escape(table_id)}"' if table_id else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    classes = [f' class="{escape(c)}"' if c else "" for c in row_classes or [""] * len(rows)]
    body = "\n".join(f"<tr{css}>" + "".join(row) + "</tr>" for css, row in zip(classes, rows))
    return f"<table{id_attribute}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def text_cell(text: str) -> str:
    return f"<td>{escape(str(text))}</td>"


def output_cell(text: str) -> str:
    """Model output, verbatim and inert."""
    return f'<td><pre class="output">{escape(str(text))}</pre></td>'


def metric_td(cell) -> str:
    css = "num best" if cell.best else "num"
    mark = " ★" if cell.best else ""
    return (f'<td class="{css}">{escape(format_value(cell.value))}{mark} '
            f'<span class="ci">{escape(format_interval(cell.ci_low, cell.ci_high))}</span></td>')


def png_image(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def configuration_cell(summary: RunSummary, configuration: str) -> str:
    flag = "" if summary.converged(configuration) else ' <span class="flag">⚠ did not converge</span>'
    return f"<td>{escape(configuration)}{flag}</td>"


def task_section(summary: RunSummary, table: TaskTable, plots: list[tuple[str, bytes]]) -> str:
    rows = [[configuration_cell(summary, config),
             *(metric_td(cells[m]) if m in cells else text_cell("—") for m in table.metrics),
             f'<td class="num">{table.n_examples[config]}</td>']
            for config, cells in table.cells.items()]
    images = "".join(png_image(png, title) for title, png in plots)
    return (f"<h3>{escape(table.task)} <span class='note'>({escape(table.task_type)})</span></h3>\n"
            f"{html_table(['configuration', *table.metrics, 'n'], rows)}\n"
            f"<p class='note'>{escape(table.resolution_sentence())}</p>\n{images}")


def convergence_section(summary: RunSummary) -> str:
    """The configurations whose training did not converge, with their dev-loss figures; "" if none."""
    if not summary.not_converged:
        return ""
    items = "".join(f"<li><b>{escape(config)}</b>: {escape(failure.sentence())}</li>"
                    for config, failures in summary.not_converged.items() for failure in failures)
    return (f"<h2>{escape(NOT_CONVERGED.capitalize())}</h2>\n<p>These configurations stay in the tables, flagged, "
            "but are never recommended nor marked ★: their figures describe a training failure, not the "
            f"strategy.</p>\n<ul>{items}</ul>")


def crashed_section(crashed: dict[str, str]) -> str:
    """The configurations whose engine crashed, each with its one-line reason; "" if none."""
    if not crashed:
        return ""
    items = "".join(f"<li><b>{escape(name)}</b>: {escape(reason)}</li>" for name, reason in crashed.items())
    return f"<h2>{escape(CRASHED_HEADER)}</h2>\n<p>{escape(CRASHED_NOTE)}</p>\n<ul>{items}</ul>"


def cost_section(summary: RunSummary) -> str:
    rows, classes = [], []
    for cost in summary.costs.values():
        for position, row in enumerate(cost_rows(cost)):
            rows.append([text_cell(row[0]), text_cell(row[1]), *(f'<td class="num">{escape(v)}</td>' for v in row[2:])])
            classes.append("item" if position else "")
    table = html_table(list(COST_HEADER), rows, row_classes=classes)
    return ("<h2>Cost per configuration</h2>\n<p class='note'>Each configuration's total is the sum of what it "
            "needs (a distilled model's teacher, an adapter's index); the rows marked ↳ are its items. Throughput is "
            "per item: tokens/s for training, chunks/s for an index.</p>\n" + table)


def data_card_section(summary: RunSummary) -> str:
    """Links to the data card of each variant's augmented training set; "" when no configuration has one."""
    cards = data_cards(summary.costs)
    if not cards:
        return ""
    items = "".join(f'<li><b>{escape(configuration)}</b>: <a href="{escape(quote(item.data_card, safe="/@"))}">'
                    f"{escape(item.name)} card</a> ({escape(item.detail or '')})</li>"
                    for configuration, item in cards)
    return ("<h2>Augmented training data</h2>\n<p class='note'>What each variant's augmentation kept and dropped, "
            f"and why:</p>\n<ul>{items}</ul>")


def degenerate_section(summary: RunSummary) -> str:
    """Shares of empty, looping and unparseable predictions per task and configuration; "" if no task generates."""
    if not summary.degenerate:
        return ""
    rows = [[text_cell(task), configuration_cell(summary, config), f'<td class="num">{shares.n}</td>',
             *(f'<td class="num">{MISSING if share is None else f"{share:.0%}"}</td>'
               for share in (shares.empty, shares.loop, shares.unparseable))]
            for task, by_config in summary.degenerate.items() for config, shares in by_config.items()]
    callouts = "".join(f"<li><b>{escape(line)}</b></li>" for line in degenerate_callouts(summary.degenerate))
    return ("<h2>Degenerate output</h2>\n<p class='note'>Share of predictions that are empty, end in a repetition "
            f"loop, or (NER) cannot be parsed; above {DEGENERATE_THRESHOLD:.0%} a task's figures measure that "
            "failure, not the strategy.</p>\n"
            + html_table(["task", "configuration", "n", "empty", "loop", "unparseable"], rows)
            + (f"\n<ul>{callouts}</ul>" if callouts else ""))


def serving_section(summary: RunSummary) -> str:
    """What serving each configuration took while it was evaluated; "" for runs from before it was recorded."""
    rows = [serving_row(config, figures) for config, figures in summary.serving.items() if figures.engine]
    if not rows:
        return ""
    return ("<h2>Serving cost per configuration</h2>\n<p class='note'>Measured while each configuration was "
            "evaluated on this run's machine: the model files it loads, the process's resident peak since that model "
            "was loaded, and throughput over all its tasks (<code>domainbench loadtest</code> measures a served "
            "endpoint under concurrency).</p>\n"
            + html_table(list(SERVING_HEADER), [[text_cell(cell) for cell in row] for row in rows]))


def load_section(summary: RunSummary) -> str:
    """Each configuration's endpoint under `domainbench loadtest`, level by level; "" when none is attached."""
    if not summary.load_tests:
        return ""
    rows, classes = [], []
    for test in summary.load_tests.values():
        for position, row in enumerate(load_rows(test)):
            rows.append([*map(text_cell, row[:3]), *(f'<td class="num">{escape(cell)}</td>' for cell in row[3:])])
            classes.append("item" if position else "")
    notes = "".join(f"<li>{escape(load_note(test))}</li>" for test in summary.load_tests.values())
    return ("<h2>Serving under load</h2>\n<p class='note'>Measured by <code>domainbench loadtest</code> on the "
            "endpoint serving each configuration: streamed completions of the suite's prompts, each level keeping "
            "that many requests in flight or sending them at that rate. Latency runs to the last token, TTFT to the first; the figures describe "
            "the machine that served, not the one that evaluated.</p>\n"
            + html_table(list(LOAD_HEADER), rows, row_classes=classes) + f"\n<ul>{notes}</ul>")


def forms_section(summary: RunSummary) -> str:
    """Each deployable form against its parent: what it saves and whether it is the same model in practice."""
    if not summary.forms:
        return ""
    parts = ["<h2>Deployable forms against their parents</h2>",
             f"<p class='note'>{escape(FORMS_NOTE)}</p>"]
    for parity in summary.forms:
        parts += [f"<h3>{escape(parity.configuration)} vs {escape(parity.parent)}</h3>",
                  f"<p>{escape(headline(parity))}</p>",
                  html_table(list(SAVINGS_HEADER), [[text_cell(cell) for cell in row] for row in savings_rows(parity)])]
        if parity.changes:
            parts.append(html_table(list(CHANGES_HEADER),
                                    [[text_cell(cell) for cell in row] for row in change_rows(parity)]))
        if parity.notes:
            parts.append("<ul>" + "".join(f"<li>{escape(note)}</li>" for note in parity.notes) + "</ul>")
    return "\n".join(parts)


def examples_section(summary: RunSummary) -> str:
    parts = ["<h2>Example predictions</h2>",
             "<p class='note'>Model output is shown verbatim as text.</p>"]
    for task, rows in summary.examples.items():
        if not rows:
            continue
        configurations = list(rows[0].predictions)
        body = [[text_cell(row.id), output_cell(row.reference), *(output_cell(row.predictions[c]) for c in configurations)]
                for row in rows]
        parts += [f"<h3>{escape(task)}</h3>", html_table(["example", "reference", *configurations], body)]
    return "\n".join(parts)


def render_html(summary: RunSummary, plots: dict[str, list[tuple[str, bytes]]],
                crashed: dict[str, str] | None = None) -> str:
    """The whole report; `plots` maps a task to (title, PNG bytes) pairs, `crashed` a configuration to why."""
    suite = summary.suite
    intro = (f"<p>Suite <b>{escape(str(suite.get('name') or '?'))}</b> (fingerprint "
             f"<code>{escape(str(suite.get('fingerprint') or '?')[:12])}</code>), "
             f"{len(summary.configurations)} configurations, {len(summary.tables)} tasks. "
             f"{escape(summary.setup) + ' ' if summary.setup else ''}Figures are value "
             f"[95% bootstrap interval]; {escape(summary.star_sentence())}</p>")
    recommendations = "".join(f"<li>{escape(rec.sentence())}</li>" for rec in summary.recommendations)
    body = "\n".join([
        f"<h1>domainbench report: {escape(summary.run)}</h1>", intro,
        "<h2>Recommendation</h2>", f"<ul>{recommendations}</ul>",
        f"<p class='note'>{escape(CHEAPEST_NOTE)}</p>",
        *(section for section in (crashed_section(crashed or {}), convergence_section(summary),
                                  degenerate_section(summary)) if section),
        "<h2>Results per task</h2>",
        *(task_section(summary, table, plots.get(table.task, [])) for table in summary.tables),
        *(section for section in (forms_section(summary), serving_section(summary), load_section(summary))
          if section),
        cost_section(summary), *(section for section in (data_card_section(summary),) if section),
        examples_section(summary)])
    return page(f"domainbench report: {summary.run}", body)
