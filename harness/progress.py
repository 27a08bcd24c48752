"""Progress display shared by every slow loop: rich bars on stderr, quiet when not a terminal."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings

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

# Deprecation warnings that libraries raise about their own calls (peft 0.17 asks transformers 5
# for `is_gradient_checkpointing`; PEFT prompt learning passes `past_key_values`): a user can do
# nothing about them, and each one repeats in every run.
_LIBRARY_WARNINGS = ("`is_gradient_checkpointing` is deprecated", "`past_key_values` is deprecated",
                     "Both `past_key_values` and `cache` are set")


def quiet_libraries() -> None:
    """One display per command: other libraries' progress bars, info logging and known warnings off.

    Set through the libraries' own environment switches, so it holds for libraries imported later
    (commands import them lazily) and for torchrun's worker processes; `--verbose` skips it.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' tqdm bars follow the hub's
    os.environ.setdefault("TQDM_DISABLE", "1")  # the rest (GGUF de-quantisation) use tqdm directly
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # already imported (tests drive the CLI in-process)
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
    for message in _LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=FutureWarning)
    # torchao logs every optional CUDA kernel library it cannot load on a CPU machine, and torch's
    # pytree logs a deprecation for torchao's enums at import: neither is the user's concern.
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


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
