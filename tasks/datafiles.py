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
# Characters one JSONL line may hold (CSV cells have the csv module's own limit): about 250k
# tokens, beyond any model's context. A longer one is a broken file; evaluating it would tokenize
# the whole text (a 50 MB line took `run` past 8 GB before it aborted).
MAX_EXAMPLE_CHARS = 1_000_000
# Values a YAML document may stand for once its aliases (`*name`) are expanded: suites and specs
# hold hundreds; a "billion laughs" document nests 90 aliases that expand to a billion.
MAX_YAML_VALUES = 100_000


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


def read_rows(path: Path, *, max_chars: int | None = MAX_EXAMPLE_CHARS) -> tuple[list[Row], list[Problem]]:
    """All well-formed rows of a data file, and a problem for each malformed one (or one over `max_chars`)."""
    name = path.name
    if not name.endswith(DATA_SUFFIXES):
        raise ValueError(f"unsupported data file {path}; expected one of {', '.join(DATA_SUFFIXES)}")
    text, problem = _text(path)
    if problem is not None:
        return [], [problem]
    return _read_csv(path, text) if name.endswith(".csv") else _read_jsonl(path, text, max_chars)


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


def _read_jsonl(path: Path, text: str, max_chars: int | None) -> tuple[list[Row], list[Problem]]:
    rows, problems = [], []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line breaks unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if max_chars is not None and len(line) > max_chars:
            problems.append(_too_long(path, number, len(line), max_chars))
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
    try:
        for record in reader:
            if None in record:
                problems.append(Problem(path, start, "csv", f"more cells than the {len(reader.fieldnames)} header columns"))
            else:
                rows.append(Row(path, start, {key: _decode_cell(value) for key, value in record.items()
                                        if value is not None}))
            start = reader.line_num + 1
    except csv.Error as exc:  # a cell over the csv module's field size limit (131072 characters), a stray NUL
        problems.append(Problem(path, start, "csv", str(exc)))
    return rows, problems


def _too_long(path: Path, line: int, size: int, max_chars: int) -> Problem:
    return Problem(path, line, "example", f"{size:,} characters on one example; at most {max_chars:,} are read "
                                          "(split the text, or check the file is not damaged)")


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


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping, and a document whose aliases expand past MAX_YAML_VALUES."""

    def __init__(self, stream):
        super().__init__(stream)
        self.expanded: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded

    def compose_node(self, parent, index):
        node = super().compose_node(parent, index)
        if id(node) not in self.expanded:  # an alias returns its anchor's node, already counted
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            else:
                children = []
            self.expanded[id(node)] = 1 + sum(self.expanded[id(child)] for child in children)
        if self.expanded[id(node)] > MAX_YAML_VALUES:
            raise yaml.composer.ComposerError(
                problem=f"aliases (*name) expand this to more than {MAX_YAML_VALUES:,} values; "
                        "refused as a YAML bomb", problem_mark=node.start_mark)
        return node

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: SafeConstructor refuses it itself
                continue
            if first is not key_node:
                # Otherwise YAML keeps the last value, and the first is lost without a word.
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {key!r} (first on line {first.start_mark.line + 1})",
                    problem_mark=key_node.start_mark)
        return super().construct_mapping(node, deep)


class _LineLoader(_SafeLoader):
    """_SafeLoader whose mappings and lists remember the line of every key and item."""


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
    """suite.yaml as LinedDict/LinedList; a syntax error, duplicate key or YAML bomb is a DomainbenchError at its line."""
    return _load_yaml(path, _LineLoader)


def read_yaml(path: Path):
    """A YAML file as plain dicts and lists, refused like `parse_yaml` (not UTF-8, duplicate keys, bombs)."""
    return _load_yaml(path, _SafeLoader)


def _load_yaml(path: Path, loader: type):
    text, problem = _text(path)
    if problem is not None:
        raise DomainbenchError(str(problem))
    try:
        return yaml.load(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise DomainbenchError(str(Problem(path, (mark.line + 1) if mark else 1, "yaml", exc.problem or str(exc))))
    except yaml.YAMLError as exc:
        raise DomainbenchError(str(Problem(path, 1, "yaml", str(exc))))
