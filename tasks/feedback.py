"""Failures become tests: answers users rated down, with the correction they gave, as new test examples.

    answers, _ = serve.traces.corrected_answers(Path("traces.sqlite"))
    outcome = add_from_feedback("suites/ops", "errno-qa", answers)

Each corrected answer becomes one example of a QA task's test split: the user's question (taken out
of the task's prompt template when the client sent the prompt in that form), the correction as its
answer, and where it came from under `feedback` (trace id, the date it was rated, the answer that was
rated down, the served configuration's fingerprint). A question the task already holds in any split
(or that an earlier correction added) is skipped, and so is one the suite's leakage rules
(tasks.leakage) refuse; the rest are appended to the task's test file and suite.yaml's version goes
up, so the suite's fingerprint changes and the next `compare` is gated on them.

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
from tasks.suite import load_suite
from tasks.suite_files import SUITES_DIR, suite_file

FEEDBACK_TASK_TYPES = ("qa",)
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


def question_from_prompt(template: str, prompt: str) -> str:
    """The `{question}` a prompt was made from with `template` (the last one, after any few-shot exemplars);
    the prompt itself when it is not in the template's form."""
    if template_fields(template) != {"question"}:
        return prompt.strip()
    parts = list(string.Formatter().parse(template))
    prefix = parts[0][0]
    suffix = "".join(literal for literal, *_ in parts[1:]).rstrip()
    text = prompt.rstrip()
    start = text.rfind(prefix) + len(prefix) if prefix else 0
    if (prefix and prefix not in text) or not text.endswith(suffix) or len(text) - len(suffix) < start:
        return prompt.strip()
    return text[start:len(text) - len(suffix)].strip()


def feedback_example(answer: CorrectedAnswer, question: str) -> dict:
    """One test example from a corrected answer, with its provenance."""
    rated = datetime.fromtimestamp(answer.rated_at, tz=timezone.utc).date().isoformat()
    provenance = {"trace_id": answer.trace_id, "rated": rated, "rated_answer": answer.answer,
                  "configuration_fingerprint": answer.configuration_fingerprint}
    if answer.comment:
        provenance["comment"] = answer.comment
    return {"id": f"feedback-{answer.trace_id}", "question": question, "answers": [answer.correction.strip()],
            "feedback": provenance}


def add_from_feedback(suite_path: str | Path, task_name: str, answers: list[CorrectedAnswer]) -> FeedbackOutcome:
    """Append the corrected answers to `task_name`'s test split as examples; see the module docstring."""
    suite = load_suite(suite_path)
    if suite.path.resolve().is_relative_to(SUITES_DIR.resolve()):
        raise DomainbenchError(f"suite {suite.name} is builtin: copy its directory and add examples to the copy")
    (task,) = suite.select([task_name])
    if task.type not in FEEDBACK_TASK_TYPES:
        raise DomainbenchError(f"{task.name}: a {task.type} task; corrections become examples of a "
                               f"{' or '.join(FEEDBACK_TASK_TYPES)} task (question → corrected answer)")
    test_file = task.data["test"]
    if not test_file.name.endswith(".jsonl"):
        raise DomainbenchError(f"{task.name}: its test file {test_file.name} is not plain JSONL; the examples "
                               "carry their provenance as nested fields, which only JSONL holds")
    seen = {normalized(example["question"]) for examples in task.examples.values() for example in examples}
    candidates, skipped = [], []
    for answer in answers:
        question = question_from_prompt(task.template, answer.prompt)
        if not question or not answer.correction.strip():
            skipped.append((answer.trace_id, "no question in the prompt" if not question else "an empty correction"))
        elif normalized(question) in seen:
            skipped.append((answer.trace_id, "the question is already in the suite"))
        else:
            seen.add(normalized(question))
            candidates.append(feedback_example(answer, question))
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
