"""Option values several commands parse the same way."""

from __future__ import annotations

from harness.errors import DomainbenchError


def task_list(task_names: str | None) -> list[str] | None:
    """`--tasks a,b` as ["a", "b"]; None (every task) when not given."""
    if task_names is None:
        return None
    names = [name.strip() for name in task_names.split(",") if name.strip()]
    if not names:
        raise DomainbenchError("--tasks: expected comma-separated task names")
    return names
