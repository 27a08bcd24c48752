"""report.md: the run summary as GitHub-flavoured Markdown.

Model output is untrusted text: it only ever appears inside a code span (`markdown_code`), where
Markdown and HTML are not interpreted; names from specs go through `markdown_text`.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from reports.costs import data_cards
from reports.crashes import CRASHED_HEADER, CRASHED_NOTE
from reports.failures import (
    DEGENERATE_THRESHOLD,
    NOT_CONVERGED,
    OutputShares,
    degenerate_callouts,
)
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

MAX_PREDICTION_CHARS = 300
LOAD_NOTE = ("Measured by `domainbench loadtest` on the endpoint serving each configuration: streamed completions of "
             "the suite's prompts, each level keeping that many requests in flight or sending them at that rate. "
             "Latency runs to the last token, TTFT to the first; the figures describe the machine that served, not "
             "the one that evaluated.")
FLAG = "⚠ did not converge"
# Characters that can start emphasis, code, links, HTML, entities or cell breaks anywhere in a line.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]<>&|~])")


def markdown_text(text: str) -> str:
    """Plain text with every Markdown/HTML-significant character backslash-escaped, on one line."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))


def markdown_code(text: str, limit: int = MAX_PREDICTION_CHARS) -> str:
    """Text as an inline code span that is safe inside a table cell.

    The fence is one backtick longer than the longest backtick run inside, newlines become a
    visible ⏎ (a table row is one line), and `|` is escaped because GFM splits cells before it
    parses code spans (inside a code span other backslashes are literal and stay single).
    """
    text = str(text)
    if len(text) > limit:
        text = text[:limit] + "…"
    if not text.strip():
        return "*(empty)*"
    text = re.sub(r"\r\n|\r|\n", " ⏎ ", text)
    # Backslashes right before a pipe are doubled too, so that none of them can un-escape it.
    text = re.sub(r"(\\*)\|", lambda m: m.group(1) * 2 + "\\|", text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def metric_cell(cell) -> str:
    text = f"{format_value(cell.value)} {format_interval(cell.ci_low, cell.ci_high)}"
    return f"**{text}** ★" if cell.best else text


def configuration_label(summary: RunSummary, configuration: str) -> str:
    label = markdown_text(configuration)
    return label if summary.converged(configuration) else f"{label} {FLAG}"


def task_section(summary: RunSummary, task_table: TaskTable, plots: list[tuple[str, str]]) -> str:
    header = ["configuration", *map(markdown_text, task_table.metrics), "n"]
    rows = [[configuration_label(summary, config),
             *(metric_cell(cells[m]) if m in cells else "—" for m in task_table.metrics),
             str(task_table.n_examples[config])]
            for config, cells in task_table.cells.items()]
    parts = [f"### {markdown_text(task_table.task)} ({markdown_text(task_table.task_type)})", "",
             table(header, rows), "", markdown_text(task_table.resolution_sentence())]
    parts += [f"\n![{markdown_text(title)}]({path})" for title, path in plots]
    return "\n".join(parts)


def convergence_section(summary: RunSummary) -> str:
    """The configurations whose training did not converge, with their dev-loss figures; "" if none."""
    if not summary.not_converged:
        return ""
    lines = [f"## {NOT_CONVERGED.capitalize()}", "",
             f"These configurations stay in the tables, marked {FLAG}, but are never recommended nor marked ★: "
             "their figures describe a training failure, not the strategy.", ""]
    lines += [f"- **{markdown_text(config)}**: {markdown_text(failure.sentence())}"
              for config, failures in summary.not_converged.items() for failure in failures]
    return "\n".join(lines) + "\n"


def crashed_section(crashed: dict[str, str]) -> str:
    """The configurations whose engine crashed, each with its one-line reason; "" if none."""
    if not crashed:
        return ""
    lines = [f"## {CRASHED_HEADER}", "", CRASHED_NOTE, ""]
    lines += [f"- **{markdown_text(name)}**: {markdown_text(reason)}" for name, reason in crashed.items()]
    return "\n".join(lines) + "\n"


def cost_section(summary: RunSummary) -> str:
    rows = [list(map(markdown_text, row)) for cost in summary.costs.values() for row in cost_rows(cost)]
    return ("## Cost per configuration\n\n"
            "Each configuration's total is the sum of what it needs (a distilled model's teacher, an adapter's "
            "index); the rows marked ↳ are its items. Throughput is per item: tokens/s for training, chunks/s "
            "for an index.\n\n" + table(list(COST_HEADER), rows))


def data_card_section(summary: RunSummary) -> str:
    """Links to the data card of each variant's augmented training set; "" when no configuration has one."""
    cards = data_cards(summary.costs)
    if not cards:
        return ""
    lines = ["## Augmented training data", "", "What each variant's augmentation kept and dropped, and why:", ""]
    lines += [f"- **{markdown_text(configuration)}**: [{markdown_text(item.name)} card]"
              f"({quote(item.data_card, safe='/@')}) ({markdown_text(item.detail or '')})"
              for configuration, item in cards]
    return "\n".join(lines) + "\n"


def degenerate_section(summary: RunSummary) -> str:
    """Shares of empty, looping and unparseable predictions per task and configuration; "" if no task generates."""
    if not summary.degenerate:
        return ""
    rows = [[markdown_text(task), configuration_label(summary, config), str(shares.n), *_share_cells(shares)]
            for task, by_config in summary.degenerate.items() for config, shares in by_config.items()]
    callouts = degenerate_callouts(summary.degenerate)
    lines = ["## Degenerate output", "",
             "Share of predictions that are empty, end in a repetition loop, or (NER) cannot be parsed; "
             f"above {DEGENERATE_THRESHOLD:.0%} a task's figures measure that failure, not the strategy.", "",
             table(["task", "configuration", "n", "empty", "loop", "unparseable"], rows)]
    lines += [""] + [f"- **{markdown_text(line)}**" for line in callouts] if callouts else []
    return "\n".join(lines) + "\n"


def _share_cells(shares: OutputShares) -> list[str]:
    return [MISSING if share is None else f"{share:.0%}" for share in (shares.empty, shares.loop, shares.unparseable)]


def serving_section(summary: RunSummary) -> str:
    """What serving each configuration took while it was evaluated; "" for runs from before it was recorded."""
    rows = [serving_row(config, figures) for config, figures in summary.serving.items() if figures.engine]
    if not rows:
        return ""
    return ("## Serving cost per configuration\n\n"
            "Measured while each configuration was evaluated on this run's machine: the model files it loads, "
            "the process's resident peak since that model was loaded, and throughput over all its tasks "
            "(`domainbench loadtest` measures a served endpoint under concurrency).\n\n"
            + table(list(SERVING_HEADER), [list(map(markdown_text, row)) for row in rows]) + "\n")


def load_section(summary: RunSummary) -> str:
    """Each configuration's endpoint under `domainbench loadtest`, level by level; "" when none is attached."""
    if not summary.load_tests:
        return ""
    rows = [list(map(markdown_text, row)) for test in summary.load_tests.values() for row in load_rows(test)]
    notes = [f"- {markdown_text(load_note(test))}" for test in summary.load_tests.values()]
    return "\n".join(["## Serving under load", "", LOAD_NOTE, "", table(list(LOAD_HEADER), rows), "", *notes, ""])


def forms_section(summary: RunSummary) -> str:
    """Each deployable form against its parent: what it saves and whether it is the same model in practice."""
    if not summary.forms:
        return ""
    lines = ["## Deployable forms against their parents", "",
             markdown_text(FORMS_NOTE), ""]
    for parity in summary.forms:
        lines += [f"### {markdown_text(parity.configuration)} vs {markdown_text(parity.parent)}", "",
                  markdown_text(headline(parity)), "",
                  table(list(SAVINGS_HEADER), [list(map(markdown_text, row)) for row in savings_rows(parity)]), ""]
        if parity.changes:
            lines += [table(list(CHANGES_HEADER), [list(map(markdown_text, row)) for row in change_rows(parity)]), ""]
        lines += [f"- {markdown_text(note)}" for note in parity.notes]
        lines += [""] if parity.notes else []
    return "\n".join(lines)


def examples_section(summary: RunSummary) -> str:
    parts = ["## Example predictions", "",
             "Model output is shown verbatim in code spans; ⏎ marks a line break."]
    for task, rows in summary.examples.items():
        if not rows:
            continue
        configurations = list(rows[0].predictions)
        header = ["example", "reference", *map(markdown_text, configurations)]
        body = [[markdown_code(row.id, 80), markdown_code(row.reference),
                 *(markdown_code(row.predictions[c]) for c in configurations)] for row in rows]
        parts += ["", f"### {markdown_text(task)}", "", table(header, body)]
    return "\n".join(parts)


def render_markdown(summary: RunSummary, plots: dict[str, list[tuple[str, str]]],
                    crashed: dict[str, str] | None = None) -> str:
    """The whole report; `plots` maps a task to (title, relative PNG path) pairs, `crashed` a configuration to why."""
    suite = summary.suite
    lines = [f"# domainbench report: {markdown_text(summary.run)}", "",
             f"Suite **{markdown_text(suite.get('name') or '?')}** (fingerprint "
             f"{markdown_code(str(suite.get('fingerprint') or '?')[:12])}), "
             f"{len(summary.configurations)} configurations, {len(summary.tables)} tasks. "
             f"{markdown_text(summary.setup) + ' ' if summary.setup else ''}"
             f"Figures are value [95% bootstrap interval]; {markdown_text(summary.star_sentence())}", "",
             "## Recommendation", ""]
    lines += [f"- {markdown_text(rec.sentence())}" for rec in summary.recommendations]
    lines += ["", CHEAPEST_NOTE, ""]
    lines += [section for section in (crashed_section(crashed or {}), convergence_section(summary),
                                      degenerate_section(summary)) if section]
    lines += ["## Results per task", ""]
    lines += [task_section(summary, t, plots.get(t.task, [])) + "\n" for t in summary.tables]
    lines += [section for section in (forms_section(summary), serving_section(summary), load_section(summary))
              if section]
    lines += [cost_section(summary), ""]
    lines += [section for section in (data_card_section(summary),) if section]
    lines += [examples_section(summary), ""]
    return "\n".join(lines)
