"""Progress display shared by every slow loop: rich bars on stderr, quiet when not a terminal."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def progress_bar(*, transient: bool = False) -> Progress:
    """A rich Progress for loops over data; use `with progress_bar() as p: task = p.add_task(...)`."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not sys.stderr.isatty(),
    )


@contextlib.contextmanager
def status(message: str):
    """A spinner for one slow step without a count (a conversion, a model load)."""
    if sys.stderr.isatty():
        with console.status(message):
            yield
    else:
        console.print(message)
        yield


@contextlib.contextmanager
def counting_bar(description: str, total: int, *, enabled: bool = True):
    """A transient bar over `total` items, yielding `advance(n)`; a no-op when not enabled."""
    if not enabled:
        yield lambda n: None
        return
    with progress_bar(transient=True) as progress:
        task = progress.add_task(description, total=total, info="")
        yield lambda n: progress.advance(task, n)
