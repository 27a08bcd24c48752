"""Reading suite data files (JSONL, gzipped JSONL, CSV) with the line number of every example.

Nothing here raises on bad rows: each problem is collected as a `Problem` so that validation can
report all of them at once.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".csv")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a suite, located as `file:line: field: problem`."""

    file: Path
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


@dataclass(frozen=True)
class Row:
    """One example as read from its file, with the line it starts on."""

    file: Path
    line: int
    fields: dict


def read_rows(path: Path) -> tuple[list[Row], list[Problem]]:
    """All well-formed rows of a data file, and a problem for each malformed one."""
    name = path.name
    if name.endswith(".csv"):
        return _read_csv(path)
    if name.endswith(".jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return _read_jsonl(path, handle)
    if name.endswith(".jsonl"):
        with open(path, encoding="utf-8") as handle:
            return _read_jsonl(path, handle)
    raise ValueError(f"unsupported data file {path}; expected one of {', '.join(DATA_SUFFIXES)}")


def _read_jsonl(path: Path, handle: io.TextIOBase) -> tuple[list[Row], list[Problem]]:
    rows, problems = [], []
    for number, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(Problem(path, number, "json", f"malformed JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(fields, dict):
            problems.append(Problem(path, number, "json", f"expected a JSON object, got {type(fields).__name__}"))
            continue
        rows.append(Row(path, number, fields))
    return rows, problems


def _read_csv(path: Path) -> tuple[list[Row], list[Problem]]:
    """CSV rows as dicts; a cell holding a JSON list or object (answers, entities) is decoded."""
    rows, problems = [], []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        start = 2  # line 1 is the header
        for record in reader:
            if None in record:
                problems.append(Problem(path, start, "csv", f"more cells than the {len(reader.fieldnames)} header columns"))
            else:
                rows.append(Row(path, start, {key: _decode_cell(value) for key, value in record.items()
                                        if value is not None}))
            start = reader.line_num + 1
    return rows, problems


def _decode_cell(value: str):
    stripped = value.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return value
    return value
