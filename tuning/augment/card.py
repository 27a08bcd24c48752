"""The data card of an augmented training set: Markdown with counts, drops and their reasons, examples.

Text an augmentation or a generator wrote goes into fenced code blocks (a fence longer than any
backtick run inside, CommonMark's rule), so nothing it holds is read as Markdown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.atomic import write_atomic
from tuning.augment.report import AugmentReport

CARD_NAME = "augmented-data.md"
_BACKTICKS = re.compile(r"`+")


def write_data_card(report: AugmentReport, directory: Path) -> Path:
    """Write the card of `report` as `directory/augmented-data.md` (atomically); returns its path."""
    path = Path(directory) / CARD_NAME
    write_atomic(path, data_card(report))
    return path


def data_card(report: AugmentReport) -> str:
    kept, dropped = sum(report.kept.values()), sum(report.dropped.values())
    lines = [f"# Augmented training data: {report.method}", "",
             f"Read {report.read} train-split items; kept {kept} augmented pieces, dropped {dropped}.", "",
             "Settings:", "", *_fenced(json.dumps(report.settings, indent=2, sort_keys=True), "json"), "",
             "## Kept", "", *_table("kind", report.kept), "",
             "## Dropped", "", *_table("reason", report.dropped), ""]
    for title, groups in (("Kept examples", report.kept_examples), ("Dropped examples", report.dropped_examples)):
        if groups:
            lines += [f"## {title}", ""]
            for group, examples in sorted(groups.items()):
                lines += [f"### {group}", ""]
                for example in examples:
                    lines += [*_fenced(example, "text"), ""]
    return "\n".join(lines)


def _table(header: str, counts) -> list[str]:
    if not counts:
        return ["None."]
    return [f"| {header} | count |", "|---|---:|", *(f"| {name} | {n} |" for name, n in sorted(counts.items()))]


def _fenced(text: str, info: str) -> list[str]:
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{info}", text, fence]
