"""Suites: a directory with `suite.yaml` and data files, loaded and validated in one pass.

Validation collects every problem — in suite.yaml and in every data row — and raises one
DomainbenchError listing them all as `file:line: field: problem`, so a domain team fixes a
hand-written suite in one round. A suite is either a builtin name (`tasks/suites/<name>/`) or a
path to a suite directory or its suite.yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DomainbenchError
from tasks.datafiles import (
    DATA_SUFFIXES,
    LinedDict,
    Problem,
    Row,
    parse_yaml,
    read_rows,
)
from tasks.fingerprints import suite_fingerprint, task_fingerprint
from tasks.prompts import check_template_syntax, template_fields
from tasks.rag_policy import RAG_MODES, rag_mode
from tasks.registry import TASK_TYPES, task_module
from tasks.spec import DEFAULT_FEWSHOT_SEPARATOR, TaskSpec
from tasks.suite_files import suite_file

SPLITS = ("train", "dev", "test")
SUITE_FIELDS = ("name", "description", "version", "tasks", "corpus")
TASK_FIELDS = ("name", "type", "description", "data", "template", "num_fewshot", "metrics", "primary_metric", "generation",
               "labels", "chat", "fewshot_separator", "rag")
TASK_NAME = r"\w[\w.+-]*"  # one file name: no path separator, not hidden, never `.` or `..`


@dataclass
class Suite:
    name: str
    description: str
    version: int
    path: Path
    tasks: list[TaskSpec]
    fingerprint: str
    corpus: Path | None = None

    def select(self, names: list[str] | None) -> list[TaskSpec]:
        """The named tasks in the order given (all when None)."""
        if not names:
            return list(self.tasks)
        by_name = {task.name: task for task in self.tasks}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise DomainbenchError(f"suite {self.name}: no task {', '.join(map(repr, unknown))}; "
                                   f"tasks: {', '.join(by_name)}")
        return [by_name[name] for name in names]


def suite_corpus_path(suite: str) -> Path:
    """The corpus file a suite's suite.yaml names (`corpus: corpus.jsonl.gz`)."""
    loaded = load_suite(suite)
    if loaded.corpus is None:
        raise DomainbenchError(f"suite {loaded.name}: names no corpus file in suite.yaml")
    return loaded.corpus


def load_suite(name_or_path: str | Path) -> Suite:
    """Load and validate a suite; raises one DomainbenchError listing every problem."""
    path = suite_file(name_or_path)
    document = parse_yaml(path)
    problems: list[Problem] = []
    report = _reporter(path, problems)
    if not isinstance(document, LinedDict):
        raise DomainbenchError(str(Problem(path, 1, "suite", "expected a mapping with name and tasks")))
    for key in document:
        if key not in SUITE_FIELDS:
            report(document, key, str(key), f"unknown field; expected one of {', '.join(SUITE_FIELDS)}")
    name = document.get("name")
    if not isinstance(name, str) or not name:
        report(document, "name", "name", "expected a non-empty string")
    version = document.get("version", 1)
    if not isinstance(version, int):
        report(document, "version", "version", "expected an integer")
    corpus = _corpus_path(path, document, report)
    raw_tasks = document.get("tasks")
    tasks: list[TaskSpec] = []
    if not isinstance(raw_tasks, list) or not raw_tasks:
        report(document, "tasks", "tasks", "expected a non-empty list of tasks")
    else:
        seen: set[str] = set()
        for index, raw in enumerate(raw_tasks):
            task = _TaskLoader(path, raw, index, raw_tasks.item_lines[index], problems).load()
            if task is not None and task.name in seen:
                report(raw, "name", f"{task.name}.name", "duplicate task name")
            elif task is not None:
                seen.add(task.name)
                tasks.append(task)
    if problems:
        # dict.fromkeys: a data file shared by two tasks reports its malformed lines once.
        lines = "\n".join(dict.fromkeys(str(problem) for problem in problems))
        raise DomainbenchError(f"{lines.count(chr(10)) + 1} problem(s) in suite {path}:\n{lines}")
    return Suite(name=name, description=document.get("description") or "", version=version, path=path.parent,
                 tasks=tasks, fingerprint=suite_fingerprint(path, tasks), corpus=corpus)


def _corpus_path(path: Path, document: dict, report) -> Path | None:
    """The suite's document collection (JSONL: id, title, section, split, text), if it names one."""
    if "corpus" not in document:
        return None
    value = document["corpus"]
    if not isinstance(value, str) or not value:
        report(document, "corpus", "corpus", "expected a file path relative to suite.yaml")
        return None
    corpus = path.parent / value
    if not corpus.is_file():
        report(document, "corpus", "corpus", f"no such file {corpus}")
        return None
    return corpus


class _TaskLoader:
    """Validates one task entry and its data files, appending every problem found."""

    def __init__(self, path: Path, raw, index: int, line: int, problems: list[Problem]):
        self.path, self.raw, self.problems = path, raw, problems
        self.line = line
        name = raw.get("name") if isinstance(raw, dict) else None
        self.label = name if isinstance(name, str) and name else f"tasks[{index}]"
        self.report = _reporter(path, problems)

    def problem(self, key: str | None, field_name: str, message: str) -> None:
        self.report(self.raw, key, f"{self.label}.{field_name}" if field_name else self.label, message)

    def load(self) -> TaskSpec | None:
        if not isinstance(self.raw, LinedDict):
            self.problems.append(Problem(self.path, self.line, self.label, "expected a mapping"))
            return None
        n_before = len(self.problems)
        for key in self.raw:
            if key not in TASK_FIELDS:
                self.problem(key, str(key), f"unknown field; expected one of {', '.join(TASK_FIELDS)}")
        if not isinstance(self.raw.get("name"), str) or not self.raw.get("name"):
            self.problem("name", "name", "expected a non-empty string")
        elif not re.fullmatch(TASK_NAME, self.raw["name"]):
            # The name is a file name in every run (results/<configuration>/<task>.json): `../x` would write elsewhere.
            self.problem("name", "name", "expected letters, digits and - _ . + (not first), as the name of "
                                         "the task's result file")
        type_name = self.raw.get("type")
        if type_name not in TASK_TYPES:
            self.problem("type", "type", f"unknown task type {type_name!r}; expected one of {', '.join(TASK_TYPES)}")
            self._read_data()  # malformed rows are worth reporting even without a type to check fields by
            return None
        module = task_module(type_name)
        spec = TaskSpec(
            name=self.label, type=type_name,
            template=self._template(module),
            data={}, examples={},
            num_fewshot=self._num_fewshot(module),
            metrics=self._metrics(module),
            generation=self._generation(module),
            labels=self._labels(type_name),
            chat=self._chat(type_name),
            fewshot_separator=self._string("fewshot_separator", DEFAULT_FEWSHOT_SEPARATOR),
            description=self._string("description", ""),
            rag=self._rag(type_name),
        )
        spec.primary_metric = self._primary_metric(spec.metrics)
        settings_valid = len(self.problems) == n_before  # example checks read the labels and template
        rows = self._read_data()
        spec.data = {split: self.path.parent / self.raw["data"][split] for split in rows}
        if settings_valid:
            spec.examples = self._check_examples(spec, module, rows)
        self._check_fewshot_pool(spec)
        if len(self.problems) > n_before:
            return None
        spec.fingerprint = task_fingerprint(self.raw, spec.data.values())
        return spec

    # ----- settings ------------------------------------------------------------------------------

    def _string(self, key: str, default: str) -> str:
        value = self.raw.get(key, default)
        if not isinstance(value, str):
            self.problem(key, key, "expected a string")
            return default
        return value

    def _template(self, module) -> str:
        template = self._string("template", module.DEFAULT_TEMPLATE)
        try:
            check_template_syntax(template)
        except (ValueError, IndexError, KeyError, AttributeError) as exc:
            self.problem("template", "template", f"not a valid str.format template ({exc}); "
                                                 "write literal braces as {{ and }}")
        return template

    def _num_fewshot(self, module) -> int:
        value = self.raw.get("num_fewshot", 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            self.problem("num_fewshot", "num_fewshot", "expected a non-negative integer")
            return 0
        if value and not module.TAKES_FEWSHOT:
            self.problem("num_fewshot", "num_fewshot", f"a {self.raw['type']} task takes no few-shot exemplars")
        return value

    def _metrics(self, module) -> tuple[str, ...]:
        value = self.raw.get("metrics", list(module.METRICS))
        if not isinstance(value, list) or not value:
            self.problem("metrics", "metrics", f"expected a non-empty list from {', '.join(module.METRICS)}")
            return tuple(module.METRICS)
        for name in value:
            if name not in module.METRICS:
                self.problem("metrics", "metrics", f"{name!r} is not a {self.raw['type']} metric; "
                                                   f"expected some of {', '.join(module.METRICS)}")
        return tuple(name for name in value if name in module.METRICS)

    def _primary_metric(self, metrics: tuple[str, ...]) -> str | None:
        value = self.raw.get("primary_metric")
        if value is not None and value not in metrics:
            self.problem("primary_metric", "primary_metric", f"{value!r} is not among the task's metrics "
                                                             f"({', '.join(metrics)})")
            return None
        return value

    def _generation(self, module) -> dict | None:
        value = self.raw.get("generation")
        if module.DEFAULT_GENERATION is None:
            if value is not None:
                self.problem("generation", "generation",
                             f"a {self.raw['type']} task is scored by log-likelihood and generates nothing")
            return None
        if value is None:
            return dict(module.DEFAULT_GENERATION)
        if not isinstance(value, dict):
            self.problem("generation", "generation", "expected a mapping with max_new_tokens and stop")
            return dict(module.DEFAULT_GENERATION)
        for key in value:
            if key not in module.DEFAULT_GENERATION:
                self.problem("generation", f"generation.{key}", "unknown field; expected max_new_tokens, stop")
        generation = {**module.DEFAULT_GENERATION, **value}
        tokens, stop = generation["max_new_tokens"], generation["stop"]
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
            self.problem("generation", "generation.max_new_tokens", "expected a positive integer")
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            self.problem("generation", "generation.stop", "expected a list of non-empty strings")
        return generation

    def _labels(self, type_name: str):
        value = self.raw.get("labels")
        if type_name == "classification":
            if not isinstance(value, dict) or not value or not all(isinstance(v, str) and v for v in value.values()):
                self.problem("labels", "labels", "expected a mapping label -> verbaliser (non-empty strings), "
                                                 "e.g. {\"2\": \" system call\"}")
                return {}
            return {str(key): verbaliser for key, verbaliser in value.items()}
        if type_name == "ner":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                self.problem("labels", "labels", "expected a non-empty list of entity types")
                return ()
            return tuple(value)
        if value is not None:
            self.problem("labels", "labels", f"a {type_name} task has no label set")
        return None

    def _chat(self, type_name: str) -> bool:
        value = self.raw.get("chat", False)
        if not isinstance(value, bool):
            self.problem("chat", "chat", "expected true or false")
            return False
        if value and type_name == "perplexity":
            self.problem("chat", "chat", "perplexity scores the text as it is; a chat template does not apply")
        return value

    def _rag(self, type_name: str) -> str:
        default = task_module(type_name).DEFAULT_RAG
        value = rag_mode(self.raw.get("rag"), type_name)
        if value not in RAG_MODES:
            self.problem("rag", "rag", f"expected one of {', '.join(RAG_MODES)} (what retrieval may show "
                                       f"this task's examples; default for {type_name}: {default})")
            return default
        if value != "off" and type_name == "perplexity":
            self.problem("rag", "rag", "perplexity scores the text as it is; retrieval does not apply")
        return value

    # ----- data ----------------------------------------------------------------------------------

    def _read_data(self) -> dict[str, list[Row]]:
        data = self.raw.get("data")
        if not isinstance(data, dict) or not data:
            self.problem("data", "data", f"expected a mapping of splits ({', '.join(SPLITS)}) to data files")
            return {}
        if "test" not in data:
            self.problem("data", "data.test", "missing: every task needs a test split")
        rows = {}
        for split, relative in data.items():
            where = f"data.{split}"
            if split not in SPLITS:
                self._data_problem(data, split, where, f"unknown split; expected one of {', '.join(SPLITS)}")
                continue
            if not isinstance(relative, str) or not relative.endswith(DATA_SUFFIXES):
                self._data_problem(data, split, where, f"expected a path ending in {', '.join(DATA_SUFFIXES)}")
                continue
            file = self.path.parent / relative
            if not file.is_file():
                self._data_problem(data, split, where, f"no such file {file}")
                continue
            split_rows, problems = read_rows(file)
            self.problems.extend(problems)
            if not split_rows and not problems:
                self._data_problem(data, split, where, f"empty split: {relative} has no examples")
            rows[split] = split_rows
        return rows

    def _data_problem(self, data, split: str, where: str, message: str) -> None:
        self.problems.append(Problem(self.path, data.key_lines.get(split, data.line), f"{self.label}.{where}", message))

    def _check_examples(self, spec: TaskSpec, module, rows: dict[str, list[Row]]) -> dict[str, list[dict]]:
        used = template_fields(spec.template)
        everywhere = set().union(*(row.fields.keys() for split_rows in rows.values() for row in split_rows))
        for name in sorted(used - everywhere) if everywhere else ():
            self.problem("template", "template", f"names field {name!r}, which no example has "
                                                 f"(fields: {', '.join(sorted(everywhere))})")
        examples = {}
        for split, split_rows in rows.items():
            seen: set[str] = set()
            for row in split_rows:
                self._check_row(spec, module, row, (used & everywhere), seen)
            examples[split] = [{**row.fields, "id": str(row.fields.get("id"))} for row in split_rows]
        return examples

    def _check_row(self, spec: TaskSpec, module, row: Row, template_needs: set[str], seen: set[str]) -> None:
        fields = row.fields
        problems = []
        example_id = fields.get("id")
        if not isinstance(example_id, str) or not example_id:
            problems.append(("id", "expected a non-empty string"))
        elif example_id in seen:
            problems.append(("id", f"duplicate id {example_id!r} in this split"))
        else:
            seen.add(example_id)
        missing = [name for name in module.REQUIRED_FIELDS if name not in fields]
        problems.extend((name, "missing field") for name in missing)
        problems.extend((name, "missing field (the template uses it)")
                        for name in sorted(template_needs - fields.keys() - set(module.REQUIRED_FIELDS)))
        if not missing:
            problems.extend(module.check_example(spec, fields))
        self.problems.extend(Problem(row.file, row.line, name, message) for name, message in problems)

    def _check_fewshot_pool(self, spec: TaskSpec) -> None:
        if spec.num_fewshot == 0:
            return
        pool = len(spec.examples.get("train", []))
        if "train" not in self.raw.get("data", {}):
            self.problem("num_fewshot", "num_fewshot", "few-shot exemplars come from the train split; "
                                                       "add data.train or set num_fewshot: 0")
        elif spec.examples and pool < spec.num_fewshot:
            self.problem("num_fewshot", "num_fewshot", f"{spec.num_fewshot} exemplars requested but the train "
                                                       f"split has {pool} examples")


def _reporter(path: Path, problems: list[Problem]):
    def report(mapping, key, field_name: str, message: str) -> None:
        line = getattr(mapping, "key_lines", {}).get(key, getattr(mapping, "line", 1))
        problems.append(Problem(path, line, field_name, message))
    return report
