"""Failures become tests: answers users rated down, with the correction they gave, as new test examples.

    answers, _ = serve.traces.corrected_answers(Path("traces.sqlite"))
    outcome = add_from_feedback("suites/ops", "errno-qa", answers)

Each corrected answer becomes one example of a task's test split: the user's input — the question
of a QA task, the text of a classification or NER task, the document of a summarization task (its
type's FEEDBACK_INPUT), taken out of the task's prompt template when the client sent the prompt in
that form — with the correction as its gold, in the type's own terms (`example_from_correction`: a
QA answer, a summary, a label named by its key or verbaliser, `TYPE: span` lines found in the text),
and where it came from under `feedback` (trace id, the date it was rated, the answer that was rated
down, the served configuration's fingerprint). An input the task already holds in any split (or
that an earlier correction added) is skipped, and so is a correction the type cannot take as gold
or one the suite's leakage rules (tasks.leakage) refuse; the rest are appended to the task's test
file and suite.yaml's version goes up, so the suite's fingerprint changes and the next `compare`
is gated on them.

This room does not read the trace store (serve/ owns it): callers pass the answers in.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness.atomic import write_atomic
from harness.errors import DomainbenchError
from retrieval.matching import normalized
from tasks.leakage import new_example_leaks
from tasks.prompts import template_fields
from tasks.registry import TASK_TYPES, task_module
from tasks.suite import load_suite
from tasks.suite_files import SUITES_DIR, suite_file

_VERSION_LINE = re.compile(r"^version:[ \t]*(\d+)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class CorrectedAnswer:
    """An answer a user rated down, with the correction they gave and the text they asked."""

    trace_id: str
    rated_at: float  # seconds since the epoch
    prompt: str
    answer: str
    correction: str
    comment: str = ""
    configuration_fingerprint: str | None = None


@dataclass
class FeedbackOutcome:
    """What `add_from_feedback` did: the examples added, each skipped answer with why, the suite before and after."""

    added: list[dict]
    skipped: list[tuple[str, str]]  # (trace id, reason)
    fingerprint_before: str
    fingerprint_after: str
    version: int
    test_file: Path = field(default_factory=Path)


def input_from_prompt(template: str, field: str, prompt: str) -> str:
    """The `{field}` a prompt was made from with `template` (the last one, after any few-shot exemplars);
    the prompt itself when it is not in the template's form."""
    if template_fields(template) != {field}:
        return prompt.strip()
    parts = list(string.Formatter().parse(template))
    prefix = parts[0][0]
    suffix = "".join(literal for literal, *_ in parts[1:]).rstrip()
    text = prompt.rstrip()
    start = text.rfind(prefix) + len(prefix) if prefix else 0
    if (prefix and prefix not in text) or not text.endswith(suffix) or len(text) - len(suffix) < start:
        return prompt.strip()
    return text[start:len(text) - len(suffix)].strip()


def feedback_example(answer: CorrectedAnswer, fields: dict) -> dict:
    """One test example from a corrected answer (`fields`: its input and gold), with its provenance."""
    rated = datetime.fromtimestamp(answer.rated_at, tz=timezone.utc).date().isoformat()
    provenance = {"trace_id": answer.trace_id, "rated": rated, "rated_answer": answer.answer,
                  "configuration_fingerprint": answer.configuration_fingerprint}
    if answer.comment:
        provenance["comment"] = answer.comment
    return {"id": f"feedback-{answer.trace_id}", **fields, "feedback": provenance}


def add_from_feedback(suite_path: str | Path, task_name: str, answers: list[CorrectedAnswer]) -> FeedbackOutcome:
    """Append the corrected answers to `task_name`'s test split as examples; see the module docstring."""
    suite = load_suite(suite_path)
    if suite.path.resolve().is_relative_to(SUITES_DIR.resolve()):
        raise DomainbenchError(f"suite {suite.name} is builtin: copy its directory and add examples to the copy")
    (task,) = suite.select([task_name])
    if task_module(task.type).FEEDBACK_INPUT is None:
        takers = ", ".join(name for name in TASK_TYPES if task_module(name).FEEDBACK_INPUT)
        raise DomainbenchError(f"{task.name}: a {task.type} task; a user's input and correction make an example "
                               f"of a {takers} task, not of this type")
    test_file = task.data["test"]
    if not test_file.name.endswith(".jsonl"):
        raise DomainbenchError(f"{task.name}: its test file {test_file.name} is not plain JSONL; the examples "
                               "carry their provenance as nested fields, which only JSONL holds")
    candidates, skipped = _candidates(task, answers)
    leaks = {leak.example_id: leak.reason for leak in new_example_leaks(suite_file(suite_path), task.name, candidates)}
    skipped += [(example["feedback"]["trace_id"], f"leaks: {leaks[example['id']]}")
                for example in candidates if example["id"] in leaks]
    added = [example for example in candidates if example["id"] not in leaks]
    version = suite.version
    if added:
        _append_examples(test_file, added)
        version = _bump_version(suite_file(suite_path))
    grown = load_suite(suite_path)  # every problem of the grown suite, as `suite validate` reports it
    return FeedbackOutcome(added, skipped, suite.fingerprint, grown.fingerprint, version, test_file)


def _candidates(task, answers: list[CorrectedAnswer]) -> tuple[list[dict], list[tuple[str, str]]]:
    """The examples the answers make for `task` (an input once, and new to the task), and each skipped one with why."""
    module = task_module(task.type)
    field = module.FEEDBACK_INPUT
    seen = {normalized(example[field]) for examples in task.examples.values() for example in examples}
    candidates, skipped = [], []
    for answer in answers:
        text = input_from_prompt(task.template, field, answer.prompt)
        if not text or not answer.correction.strip():
            skipped.append((answer.trace_id, f"no {field} in the prompt" if not text else "an empty correction"))
            continue
        if normalized(text) in seen:
            skipped.append((answer.trace_id, f"the {field} is already in the suite"))
            continue
        try:
            fields = module.example_from_correction(task, text, answer.correction.strip())
        except ValueError as why:
            skipped.append((answer.trace_id, f"the correction: {why}"))
            continue
        seen.add(normalized(text))
        candidates.append(feedback_example(answer, fields))
    return candidates, skipped


def _append_examples(test_file: Path, examples: list[dict]) -> None:
    text = test_file.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text += "\n"
    write_atomic(test_file, text + "".join(json.dumps(example, ensure_ascii=False) + "\n" for example in examples))


def _bump_version(suite_yaml: Path) -> int:
    """suite.yaml's `version:` one up (added as 2 when absent: the default is 1), the rest of the file as it was."""
    text = suite_yaml.read_text(encoding="utf-8")
    found = _VERSION_LINE.search(text)
    version = int(found.group(1)) + 1 if found else 2
    text = (_VERSION_LINE.sub(f"version: {version}", text, count=1) if found
            else text + ("" if text.endswith("\n") else "\n") + f"version: {version}\n")
    write_atomic(suite_yaml, text)
    return version
