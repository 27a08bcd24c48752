"""`domainbench models …`: what model specs are available offline."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from harness.models import BUILTIN_MODELS, cache_dir, cached_models, resolve_model


@click.group("models")
def models_group() -> None:
    """Builtin and cached models."""


@models_group.command("list")
def list_models() -> None:
    """Show builtin model names and what is already converted in the cache."""
    cached = {row["name"]: row for row in cached_models()}
    table = Table(title=f"models (cache: {cache_dir() / 'models'})")
    for column in ("name", "kind", "cached", "description"):
        table.add_column(column)
    for name, description in BUILTIN_MODELS.items():
        row = cached.pop(name, None)
        table.add_row(name, "builtin", f"{row['size_mb']:.0f} MB" if row else "no (converted on first use)", description)
    for name, row in cached.items():
        table.add_row(name, "cached", f"{row['size_mb']:.0f} MB", row["path"])
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@models_group.command("prepare")
@click.argument("spec")
def prepare_model(spec: str) -> None:
    """Resolve SPEC now (convert a builtin or GGUF into the cache) and print its directory."""
    click.echo(resolve_model(spec))


COMMANDS = [models_group]
