"""Configurations whose engine crashed in a run: one line each, in the run folder and in its report.

A crashed configuration has no result files, so a rerun evaluates it (and only it) again; its
record lasts until that rerun starts. Records live in `runs/<run>/crashed/<configuration>.json`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.atomic import write_atomic

CRASHED_DIR = "crashed"
CRASHED_HEADER = "Configurations that crashed"
CRASHED_NOTE = ("Their engine died while evaluating them; they have no results in this report. "
                "Running the same command again retries them alone and reuses every finished result.")


def record_crash(run_dir: Path, configuration: str, reason: str) -> None:
    """Note that `configuration`'s engine crashed, with the one-line reason."""
    record = {"configuration": configuration, "reason": reason}
    write_atomic(Path(run_dir) / CRASHED_DIR / f"{configuration}.json", json.dumps(record) + "\n")


def clear_crashes(run_dir: Path) -> None:
    """Forget the crashes of earlier attempts: this one retries those configurations."""
    shutil.rmtree(Path(run_dir) / CRASHED_DIR, ignore_errors=True)


def crashes(run_dir: Path) -> dict[str, str]:
    """configuration -> the reason its engine crashed, for the run in `run_dir`."""
    folder = Path(run_dir) / CRASHED_DIR
    records = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return {record["configuration"]: record["reason"] for record in records}

