"""Fingerprints of a suite and of each task: what decides whether a stored result is still valid."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tasks.spec import TaskSpec


def suite_fingerprint(path: Path, tasks: list[TaskSpec]) -> str:
    """sha256 over suite.yaml and every data file (by path relative to the suite, then content)."""
    digest = hashlib.sha256(path.read_bytes())
    files = sorted({file for task in tasks for file in task.data.values()})
    for file in files:
        digest.update(str(file.relative_to(path.parent)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def task_fingerprint(raw: dict, files) -> str:
    """sha256 over one task's entry and its data files: changes only when this task changes."""
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode())
    for file in sorted(set(files)):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()
