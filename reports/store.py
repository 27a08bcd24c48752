"""A run directory's results, kept by input key: which are fresh, writing one, and which configurations crashed.

A result is fresh when its file reads and its `settings.input_key` is the key its evaluation
would have now (the runner's keys: run/evaluations.py); anything else — missing, unreadable, from
an older schema, or from other inputs — is evaluated again. Writes are atomic, so an interrupted
run leaves whole results behind and a rerun resumes from them.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import DomainbenchError
from reports.crashes import clear_crashes, record_crash
from reports.schema import ResultFile, load_result, result_path, write_result


class ResultStore:
    """The results and crash records of the run in `run_dir`."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def fresh(self, configuration: str, task: str, input_key: str) -> ResultFile | None:
        """The stored result of (configuration, task) when it was computed from `input_key`'s inputs, else None."""
        path = result_path(self.run_dir, configuration, task)
        if not path.is_file():
            return None
        try:
            stored = load_result(path)
        except DomainbenchError:
            return None  # unreadable or from an older schema: evaluate again
        return stored if stored.settings.get("input_key") == input_key else None

    def save(self, record: ResultFile) -> Path:
        """Write `record` where its (configuration, task) result lives."""
        return write_result(result_path(self.run_dir, record.configuration, record.task), record)

    def clear_crashes(self) -> None:
        """Forget the crashes of earlier attempts: this one retries those configurations."""
        clear_crashes(self.run_dir)

    def record_crash(self, configuration: str, reason: str) -> None:
        record_crash(self.run_dir, configuration, reason)
