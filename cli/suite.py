"""`domainbench suite …`: list builtin suites, show a suite's effective settings, validate one.

Other areas attach more subcommands (`suite build`, `suite check-leakage`) to `suite_group`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from harness.errors import DomainbenchError
from tasks.suite import load_suite
from tasks.suite_files import builtin_suites, read_header


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 200)


@click.group("suite")
def suite_group() -> None:
    """Task suites: builtin ones, or a directory with suite.yaml and data files."""


@suite_group.command("list")
def list_suites() -> None:
    """Builtin suites (any suite directory works too: pass its path)."""
    table = Table(title="builtin suites")
    for column in ("name", "version", "tasks", "description", "path"):
        table.add_column(column)
    for name in builtin_suites():
        header = read_header(name)
        table.add_row(name, str(header["version"]), ", ".join(map(str, header["tasks"])), header["description"],
                      str(header["path"]))
    _console().print(table)


@suite_group.command("show")
@click.argument("suite")
@click.option("--json", "as_json", is_flag=True, help="Print the effective settings as JSON.")
def show_suite(suite: str, as_json: bool) -> None:
    """Every task of SUITE (name or path) with its effective settings, defaults filled in."""
    loaded = load_suite(suite)
    settings = {task.name: {**task.settings(), "description": task.description,
                            "data": {split: str(path) for split, path in task.data.items()}}
                for task in loaded.tasks}
    if as_json:
        click.echo(json.dumps({"name": loaded.name, "version": loaded.version, "path": str(loaded.path),
                               "fingerprint": loaded.fingerprint, "tasks": settings}, indent=2))
        return
    click.echo(f"suite {loaded.name} v{loaded.version} ({loaded.path})  fingerprint {loaded.fingerprint[:16]}")
    if loaded.description:
        click.echo(loaded.description)
    for name, task_settings in settings.items():
        click.echo(f"\n{name}")
        for key, value in task_settings.items():
            click.echo(f"  {key}: {json.dumps(value, ensure_ascii=False)}")


@suite_group.command("validate")
@click.argument("path")
def validate_suite(path: str) -> None:
    """Check PATH (a suite dir, its suite.yaml, or a builtin name); list every problem, exit 2 if any."""
    from tasks.leakage import check_sources

    loaded = load_suite(path)
    unknown = check_sources(path)
    if unknown:
        raise DomainbenchError(f"suite {loaded.name}: {len(unknown)} example(s) name a source document that is not "
                               "in the corpus:\n" + "\n".join(map(str, unknown)))
    counts = ", ".join(f"{task.name} ({sum(task.settings()['splits'].values())} examples)" for task in loaded.tasks)
    click.echo(f"ok: suite {loaded.name}: {len(loaded.tasks)} tasks: {counts}")


@suite_group.command("add-from-feedback")
@click.argument("traces", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--suite", "suite_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="The suite directory to grow (not a builtin suite: copy it first).")
@click.option("--task", "task_name", required=True, help="The task whose test split takes the new examples (QA, NER, classification or "
                   "summarization).")
def add_from_feedback(traces: Path, suite_dir: Path, task_name: str) -> None:
    """Turn answers rated "down" with a correction in TRACES (`serve --traces`) into test examples of a task.

    The user's input (a question, text or document) with the correction as its gold: an answer, a
    summary, a label (its name or verbaliser), `TYPE: span` lines. Each carries its provenance
    (trace id, date); inputs the suite already holds, corrections the task type cannot take as gold
    and examples its leakage rules refuse are skipped; suite.yaml's version goes up, so its
    fingerprint changes.
    """
    from serve.traces import corrected_answers
    from tasks.feedback import add_from_feedback as grow_suite

    answers, without_text = corrected_answers(traces)
    outcome = grow_suite(suite_dir, task_name, answers)
    for trace_id, reason in outcome.skipped:
        click.echo(f"skipped {trace_id}: {reason}", err=True)
    if without_text:
        click.echo(f"skipped {without_text} corrected answer(s) whose prompt the store does not hold "
                   "(served without --trace-text, or several prompts in one request)", err=True)
    if not outcome.added:
        click.echo(f"no new examples for {task_name}; suite unchanged")
        return
    click.echo(f"added {len(outcome.added)} example(s) to {task_name} ({outcome.test_file}); suite version "
               f"{outcome.version}, fingerprint {outcome.fingerprint_before[:12]} -> {outcome.fingerprint_after[:12]}")


COMMANDS = [suite_group]
