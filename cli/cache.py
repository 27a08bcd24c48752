"""`domainbench cache …`: what the cache holds, and removing what no run here will reuse."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from harness.models import cache_dir

RUNS_OPTION = click.option(
    "--runs", "runs_roots", multiple=True, type=click.Path(path_type=Path, file_okay=False), default=("runs",),
    show_default=True, help="A folder of run dirs whose linked artifacts are kept (repeatable).")


@click.group("cache")
def cache_group() -> None:
    """Tuned artifacts, forms and indexes in the cache."""


@cache_group.command("list")
@RUNS_OPTION
def list_cache(runs_roots: tuple[Path, ...]) -> None:
    """Each cached artifact, form and index: its size, and whether a run here can reuse it."""
    from run.cache import cache_entries

    entries = cache_entries(list(runs_roots))
    table = Table(title=f"cache: {cache_dir()}")
    for column in ("kind", "name", "size", "created", "reusable here", "linked from"):
        table.add_column(column)
    for entry in entries:
        table.add_row(entry.kind, entry.path.name, _size(entry.bytes), (entry.created or "")[:10],
                      "yes" if entry.stale is None else f"no: {entry.stale}",
                      ", ".join(str(run) for run in entry.linked_from))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    removable = [entry for entry in entries if entry.removable]
    click.echo(f"{len(entries)} entries, {_size(sum(e.bytes for e in entries))}; `domainbench cache prune --yes` "
               f"would remove {len(removable)} ({_size(sum(e.bytes for e in removable))})", err=True)


@cache_group.command("prune")
@RUNS_OPTION
@click.option("--yes", is_flag=True, help="Remove them (without it, only say what would go).")
def prune_cache(runs_roots: tuple[Path, ...], yes: bool) -> None:
    """Remove entries no run here will reuse — made by other code, or without a readable manifest — unless a
    run dir links to them.

    "Other code" is another installation's too: where two environments share one cache (DOMAINBENCH_CACHE),
    prune from the one whose entries should stay, or look at `cache list` first.
    """
    from run.cache import cache_entries, remove_entries

    entries = cache_entries(list(runs_roots))
    removable = [entry for entry in entries if entry.removable]
    for entry in entries:
        if entry.stale is not None and entry.linked_from:
            click.echo(f"kept {entry.path}: {entry.stale}, but {entry.linked_from[0]} links to it", err=True)
    for entry in removable:
        click.echo(f"{'removing' if yes else 'would remove'} {entry.path} ({_size(entry.bytes)}): {entry.stale}")
    total = _size(sum(entry.bytes for entry in removable))
    if not yes:
        click.echo(f"{len(removable)} entries, {total}; run again with --yes to remove them", err=True)
        return
    click.echo(f"removed {len(removable)} entries, {_size(remove_entries(removable))} freed", err=True)


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.1f} MB"


COMMANDS = [cache_group]
