"""Progress display shared by every slow loop: rich bars on a terminal, a steady progress line in a log."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
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
    # MLflow (`--mlflow`) logs each database migration and store step at INFO; read when it is imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
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
    """A rich Progress for loops over data; use `with progress_bar() as p: task = p.add_task(...)`.

    On a terminal it draws bars; anywhere else (CI, nohup, a redirected stderr) it prints a line
    per unfinished task every LOG_INTERVAL_SECONDS instead, so a log shows the run is alive.
    """
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
    if not sys.stderr.isatty():
        return LoggedProgress(*columns, console=console)
    return Progress(*columns, console=console, transient=transient)


# Seconds between progress lines off a terminal: often enough to see a run is alive, rarely
# enough that a log of a 20-minute step stays a screenful.
LOG_INTERVAL_SECONDS = 30.0


class LoggedProgress(Progress):
    """A Progress that draws nothing and prints `progress_line` for each unfinished task at a steady interval.

    A timer thread prints, not the loop: a step that takes minutes still gets its lines.
    """

    def __init__(self, *columns, console: Console, interval: float | None = None):
        super().__init__(*columns, console=console, disable=True)
        self.interval = LOG_INTERVAL_SECONDS if interval is None else interval
        self._stopped = threading.Event()
        self._timer: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        self._stopped.clear()
        self._timer = threading.Thread(target=self._log_until_stopped, name="progress-log", daemon=True)
        self._timer.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._timer is not None:
            self._timer.join()
        super().stop()

    def _log_until_stopped(self) -> None:
        while not self._stopped.wait(self.interval):
            for task in self.tasks:
                if not task.finished:
                    self.console.print(progress_line(task), markup=False, highlight=False, soft_wrap=True)


def progress_line(task) -> str:
    """`description: 12/48 (25%) · elapsed 1m30s · ETA 4m30s · info` for a rich Task.

    The ETA comes from rich's recent rate, or the mean rate so far when the last steps were too
    slow for rich to have one.
    """
    elapsed = task.elapsed or 0.0
    parts = [f"{task.description}: {task.completed:g}"]
    if task.total:
        parts[0] += f"/{task.total:g} ({100 * task.completed / task.total:.0f}%)"
    parts.append(f"elapsed {_duration(elapsed)}")
    rate = task.speed or (task.completed / elapsed if elapsed else None)
    if task.total and rate:
        parts.append(f"ETA {_duration((task.total - task.completed) / rate)}")
    info = str(task.fields.get("info") or "").strip()
    return " · ".join(parts + ([info] if info else []))


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


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
