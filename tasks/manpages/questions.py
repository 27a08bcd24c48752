"""errno-qa: "Which error does rename() return when …?" from ERRORS entries, and "Which header
declares openat()?" from SYNOPSIS include groups.

Every question carries the gold context (the relevant section) and its source page, so one
example serves closed-book, gold-context and retrieval runs.
"""

from __future__ import annotations

import re

from tasks.manpages.pages import Page
from tasks.manpages.render import bounded_paragraphs
from tasks.manpages.structure import ErrorEntry, error_entries, synopsis_headers

QUESTION_SECTIONS = ("2", "3")  # pages about functions: ERRORS and SYNOPSIS name function calls
MIN_CONDITION_CHARS, MAX_CONDITION_CHARS = 20, 300
CONTEXT_CHARS = 1500


def errno_qa_examples(page: Page) -> list[dict]:
    """Error and header questions of one page, in page order."""
    if page.section not in QUESTION_SECTIONS or not page.names:
        return []
    return [*_error_questions(page), *_header_questions(page)]


def _error_questions(page: Page) -> list[dict]:
    entries = error_entries(page.markup.get("ERRORS", []))
    ambiguous = _ambiguous_conditions(entries)
    examples = []
    for index, entry in enumerate(entries):
        condition = _bounded_condition(entry.condition)
        if condition is None or _normalized(entry.condition) in ambiguous:
            continue
        function = entry.function if entry.function in page.names else page.names[0]
        examples.append({
            "id": f"{page.id}#errno{index}",
            "question": f"Which error does {function}() return when this happens: {condition}",
            "answers": list(entry.errnos),
            "context": _errors_context(entries, index),
            "source": {"doc_id": page.id, "section": "ERRORS"},
        })
    return examples


def _ambiguous_conditions(entries: list[ErrorEntry]) -> set[str]:
    # A condition listed under several errnos (e.g. EACCES and EPERM entries with one wording)
    # has no single answer; an entry whose tag names alternatives ("EAGAIN or EWOULDBLOCK")
    # accepts each of them and is kept.
    answers: dict[str, set[tuple[str, ...]]] = {}
    for entry in entries:
        answers.setdefault(_normalized(entry.condition), set()).add(entry.errnos)
    return {condition for condition, tags in answers.items() if len(tags) > 1}


def _normalized(text: str) -> str:
    return _normalized_space(text).lower()


def _normalized_space(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _bounded_condition(condition: str) -> str | None:
    """The condition's first sentences up to MAX_CONDITION_CHARS; None when it is a pointer."""
    condition = _normalized_space(condition)
    if len(condition) < MIN_CONDITION_CHARS or condition.startswith(("See ", "Similar to ", "As for ")):
        return None
    if len(condition) <= MAX_CONDITION_CHARS:
        return condition
    cut = condition.rfind(". ", 0, MAX_CONDITION_CHARS)
    return condition[: cut + 1] if cut >= MIN_CONDITION_CHARS else None


def _errors_context(entries: list[ErrorEntry], gold: int) -> str:
    """The ERRORS entries around the gold one, as the page lists them, within CONTEXT_CHARS."""
    lines = [" or ".join(entry.errnos) + " " + _normalized_space(entry.condition) for entry in entries]
    low = high = gold
    size = len(lines[gold])
    while True:
        grown = False
        for candidate in (high + 1, low - 1):
            if 0 <= candidate < len(lines) and not low <= candidate <= high:
                if size + len(lines[candidate]) + 1 > CONTEXT_CHARS:
                    continue
                size += len(lines[candidate]) + 1
                low, high, grown = min(low, candidate), max(high, candidate), True
        if not grown:
            break
    return "\n".join(lines[low : high + 1])


def _header_questions(page: Page) -> list[dict]:
    declared = synopsis_headers(page.markup.get("SYNOPSIS", []))
    context = bounded_paragraphs(page.rendered.get("SYNOPSIS", ""), CONTEXT_CHARS)
    examples = []
    for function in page.names:
        headers = declared.get(function, [])
        # Two includes without a comment ("<sys/types.h>" and "<sys/stat.h>") leave it open
        # which one declares the function: no single answer, so no question.
        if len(headers) != 1:
            continue
        examples.append({
            "id": f"{page.id}#header-{function}",
            "question": f"Which header declares {function}()?",
            "answers": headers,
            "context": context,
            "source": {"doc_id": page.id, "section": "SYNOPSIS"},
        })
    return examples
