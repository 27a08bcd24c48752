"""The result file: one JSON per (configuration, task), versioned, written atomically.

`runs/<run>/results/<configuration>/<task>.json` holds everything a report needs and everything
a reader needs to trace a number back to examples: metrics with intervals, settings, fingerprints
of model and data, cost, and every example's prediction, reference and scores.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import atomic_file
from harness.errors import DomainbenchError

if TYPE_CHECKING:
    from tasks.evaluate import TaskResult
    from tasks.suite import Suite

SCHEMA_VERSION = 1
RESULTS_DIR = "results"


@dataclass
class ResultFile:
    run: str
    configuration: str
    task: str
    task_type: str
    suite: dict[str, Any]        # {name, fingerprint, task_fingerprint}
    model: dict[str, Any]        # {spec, fingerprint, adapter}
    settings: dict[str, Any]
    metrics: dict[str, dict]     # {name: {value, ci_low, ci_high, n}}
    cost: dict[str, Any]
    examples: list[dict]         # [{id, prediction, reference, scores, retrieved?}]
    versions: dict[str, str] = field(default_factory=lambda: software_versions())
    schema_version: int = SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        return {"schema_version": record.pop("schema_version"), **record}


def result_file(result: "TaskResult", *, run: str, configuration: str, suite: "Suite", model_spec: str,
                model_fingerprint: str, adapter: str | None = None) -> ResultFile:
    """The result file of one evaluated task (`tasks.evaluate.evaluate_task`'s result)."""
    return ResultFile(
        run=run, configuration=configuration, task=result.task.name, task_type=result.task.type,
        suite={"name": suite.name, "fingerprint": suite.fingerprint, "task_fingerprint": result.task.fingerprint},
        model={"spec": model_spec, "fingerprint": model_fingerprint, "adapter": adapter},
        settings=result.settings,
        metrics={name: metric.as_dict() for name, metric in result.metrics.items()},
        cost=result.cost,
        examples=[record.as_dict() for record in result.records],
    )


def result_path(output_dir: Path, configuration: str, task: str) -> Path:
    """Where a (configuration, task) result lives: always inside `output_dir`'s results folder."""
    for name in (configuration, task):
        if name in ("", ".", "..") or any(separator in name for separator in ("/", "\\", "\0")):
            raise DomainbenchError(f"result of {configuration} / {task}: {name!r} is not a file name, and a "
                                   f"result must stay inside {Path(output_dir) / RESULTS_DIR}")
    return Path(output_dir) / RESULTS_DIR / configuration / f"{task}.json"


def write_result(path: Path, result: ResultFile) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a result."""
    path = Path(path)
    with atomic_file(path) as handle:
        json.dump(result.as_dict(), handle, indent=1, ensure_ascii=False, allow_nan=False)
        handle.write("\n")
    return path


def load_result(path: Path) -> ResultFile:
    """Read a result file; one from another schema version is refused with what to do about it."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DomainbenchError(f"{path}: no such result file") from None
    except json.JSONDecodeError as exc:
        raise DomainbenchError(f"{path}:{exc.lineno}: json: not a result file ({exc.msg})") from None
    version = record.get("schema_version") if isinstance(record, dict) else None
    if version != SCHEMA_VERSION:
        raise DomainbenchError(
            f"{path}:1: schema_version: {version!r} is not the supported version {SCHEMA_VERSION}; "
            f"{'rerun the evaluation' if isinstance(version, int) and version < SCHEMA_VERSION else 'upgrade domainbench'}"
            " to read it")
    names = {f.name for f in fields(ResultFile)}
    missing = sorted(names - record.keys())
    if missing:
        raise DomainbenchError(f"{path}:1: {missing[0]}: missing from the result file")
    problem = _type_problem(record)
    if problem:
        raise DomainbenchError(f"{path}: {problem}; not a result file domainbench wrote (rerun the evaluation)")
    return ResultFile(**{name: record[name] for name in names})


# What each field of a result file holds, as JSON types; checked at load so that a hand-edited or
# foreign file is refused with the field named, not met later as a TypeError in a report.
_FIELD_TYPES = {"run": str, "configuration": str, "task": str, "task_type": str, "suite": dict, "model": dict,
                "settings": dict, "metrics": dict, "cost": dict, "examples": list, "versions": dict}
_METRIC_NUMBERS = ("value", "ci_low", "ci_high")


def _type_problem(record: dict) -> str | None:
    """The first field of a result file whose value has the wrong JSON type, as `field: expected …, got …`."""
    for name, expected in _FIELD_TYPES.items():
        if not isinstance(record[name], expected):
            return _wrong(name, expected.__name__, record[name])
    for metric, entry in record["metrics"].items():
        if not isinstance(entry, dict):
            return _wrong(f"metrics.{metric}", "an object {value, ci_low, ci_high, n}", entry)
        for key in _METRIC_NUMBERS:
            if not _number_or_null(entry.get(key)):
                return _wrong(f"metrics.{metric}.{key}", "a number or null", entry.get(key))
        if not (entry.get("n") is None or isinstance(entry["n"], int) and not isinstance(entry["n"], bool)):
            return _wrong(f"metrics.{metric}.n", "an integer", entry["n"])
    for index, example in enumerate(record["examples"]):
        if not isinstance(example, dict):
            return _wrong(f"examples[{index}]", "an object", example)
        if not isinstance(example.get("id"), (str, int)) or isinstance(example.get("id"), bool):
            return _wrong(f"examples[{index}].id", "a string", example.get("id"))
        if not isinstance(example.get("scores", {}), dict):
            return _wrong(f"examples[{index}].scores", "an object", example.get("scores"))
    return None


def _number_or_null(value) -> bool:
    return value is None or isinstance(value, (int, float)) and not isinstance(value, bool)


def _wrong(field: str, expected: str, value) -> str:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{field}: expected {expected}, got {shown}"


def software_versions() -> dict[str, str | None]:
    """Versions that can change a number: domainbench, torch, transformers, Python."""
    from harness.manifest import code_versions

    return {**code_versions("torch", "transformers"), "python": platform.python_version()}
