"""Reading suite files with line numbers: suite.yaml, and data files (JSONL, gzipped JSONL, CSV).

Nothing here raises on bad rows: each problem is collected as a `Problem` so that validation can
report all of them at once.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import DomainbenchError

DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".csv")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a suite, located as `file:line: field: problem`."""

    file: Path
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{_shown(self.file)}:{self.line}: {self.field}: {self.message}"


@dataclass(frozen=True)
class Row:
    """One example as read from its file, with the line it starts on."""

    file: Path
    line: int
    fields: dict


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read_rows(path: Path) -> tuple[list[Row], list[Problem]]:
    """All well-formed rows of a data file, and a problem for each malformed one."""
    name = path.name
    if not name.endswith(DATA_SUFFIXES):
        raise ValueError(f"unsupported data file {path}; expected one of {', '.join(DATA_SUFFIXES)}")
    text, problem = _text(path)
    if problem is not None:
        return [], [problem]
    return _read_csv(path, text) if name.endswith(".csv") else _read_jsonl(path, text)


def _text(path: Path) -> tuple[str, Problem | None]:
    """The file's text, or the one problem that stops it being read: not gzip, or not UTF-8."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            return "", Problem(path, 1, "gzip", f"not a readable gzip file ({exc})")
    elif data.startswith(_GZIP_MAGIC):
        return "", Problem(path, 1, "encoding", "holds gzip-compressed bytes, not UTF-8 text "
                                                "(a gzipped JSONL file is named .jsonl.gz)")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return "", Problem(path, line, "encoding", f"not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                                                   "save the file as UTF-8")


def _read_jsonl(path: Path, text: str) -> tuple[list[Row], list[Problem]]:
    rows, problems = [], []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line breaks unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(path, number, "json", f"malformed JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(fields, dict):
            problems.append(Problem(path, number, "json", f"expected a JSON object, got {type(fields).__name__}"))
            continue
        rows.append(Row(path, number, fields))
    return rows, problems


def _read_csv(path: Path, text: str) -> tuple[list[Row], list[Problem]]:
    """CSV rows as dicts; a cell holding a JSON list or object (answers, entities) is decoded."""
    rows, problems = [], []
    reader = csv.DictReader(io.StringIO(text, newline=""))
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


# ----- suite.yaml with line numbers ---------------------------------------------------------------

class LinedDict(dict):
    """A YAML mapping that knows its line and the line of each key."""

    line: int = 1
    key_lines: dict


class LinedList(list):
    """A YAML list that knows its line and the line of each item."""

    line: int = 1
    item_lines: list


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and lists remember the line of every key and item."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LinedDict:
    mapping = LinedDict(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {loader.construct_object(key, deep=True): key.start_mark.line + 1 for key, _ in node.value}
    return mapping


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LinedList:
    items = LinedList(loader.construct_sequence(node, deep=True))
    items.line = node.start_mark.line + 1
    items.item_lines = [item.start_mark.line + 1 for item in node.value]
    return items


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def parse_yaml(path: Path):
    """suite.yaml as LinedDict/LinedList; a syntax error is a DomainbenchError at its line."""
    text, problem = _text(path)
    if problem is not None:
        raise DomainbenchError(str(problem))
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise DomainbenchError(str(Problem(path, (mark.line + 1) if mark else 1, "yaml", exc.problem or str(exc))))
    except yaml.YAMLError as exc:
        raise DomainbenchError(str(Problem(path, 1, "yaml", str(exc))))
