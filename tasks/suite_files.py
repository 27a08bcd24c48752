"""Where suites are: builtin names and suite directories, and what suite.yaml says before any data is read."""

from __future__ import annotations

from pathlib import Path

from harness.errors import DomainbenchError
from tasks.datafiles import parse_yaml

SUITES_DIR = Path(__file__).parent / "suites"
SUITE_FILE = "suite.yaml"


def builtin_suites() -> list[str]:
    return sorted(p.name for p in SUITES_DIR.iterdir() if (p / SUITE_FILE).is_file())


def suite_file(name_or_path: str | Path) -> Path:
    """The suite.yaml of a builtin name, a suite directory, or a suite.yaml path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if not (path / SUITE_FILE).is_file():
            raise DomainbenchError(f"suite {name_or_path}: directory has no {SUITE_FILE}")
        return path / SUITE_FILE
    if (SUITES_DIR / str(name_or_path) / SUITE_FILE).is_file():
        return SUITES_DIR / str(name_or_path) / SUITE_FILE
    raise DomainbenchError(f"suite {name_or_path}: not a builtin suite ({', '.join(builtin_suites())}) "
                           "nor a suite directory or suite.yaml file")


def read_header(name_or_path: str | Path) -> dict:
    """name, description, version and task names from suite.yaml, without reading data files."""
    path = suite_file(name_or_path)
    document = parse_yaml(path)
    document = document if isinstance(document, dict) else {}
    tasks = document.get("tasks") if isinstance(document.get("tasks"), list) else []
    return {"name": document.get("name"), "description": document.get("description") or "",
            "version": document.get("version"), "path": path.parent,
            "tasks": [task.get("name") for task in tasks if isinstance(task, dict)]}
