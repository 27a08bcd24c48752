"""Degenerate model output: an empty answer, a repetition loop, or NER text its parser cannot read.

A report shows the share of such predictions per configuration and task: where it is high, the
task's figures measure a failure mode rather than the strategy. A prediction gets one verdict,
checked in this order:

- `empty`: nothing but whitespace — e.g. an instruct model whose first token is the newline stop
  string.
- `loop`: the text ends in one n-gram of 1 to 4 words repeated at least 3 times in a row, and
  those repeats cover at least half of its words — greedy decoding stuck until the token budget
  ran out. Words are compared lowercased without surrounding punctuation, so "EINVAL, EINVAL,
  EINVAL" loops. The n-gram is the text's last n words, so a loop cut off mid-n-gram by the budget
  is still found (its tail is a rotation of the repeated unit).
- `unparseable` (NER only): the output is not the no-entities answer, and the task's parser
  (`tasks.ner.parse_entities`) read no entity of a declared type from it.
- `ok`: anything else.

Torch-free on purpose: the NER parser lives with the task type (which needs the engine), so its
reading of an output is passed in rather than recomputed here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

OK, EMPTY, LOOP, UNPARSEABLE = "ok", "empty", "loop", "unparseable"

MAX_LOOP_WORDS = 4
MIN_LOOP_REPEATS = 3
MIN_LOOP_COVERAGE = 0.5
# The NER target of an example without entities (tasks/ner.py's NO_ENTITIES); a test keeps them equal.
NO_ENTITIES_ANSWER = "none"
_PUNCTUATION = "\"'`.,;:!?()[]{}<>«»\u201c\u201d\u2018\u2019"


def classify_text(text: str | None) -> str:
    """`ok`, `empty` or `loop` for one generated text."""
    if text is None or not text.strip():
        return EMPTY
    return LOOP if is_loop(text) else OK


def classify_entity_output(output: str | None, entity_types: Iterable[str], labels: Collection[str]) -> str:
    """`ok`, `empty`, `loop` or `unparseable` for one NER output.

    `entity_types`: the types of the entities the task's parser read from `output`.
    """
    verdict = classify_text(output)
    if verdict != OK:
        return verdict
    if any(entity_type in labels for entity_type in entity_types) or _says_no_entities(output):
        return OK
    return UNPARSEABLE


def is_loop(text: str) -> bool:
    """Whether the text ends in a short n-gram repeated until it covers most of the text."""
    words = _words(text)
    for n in range(1, MAX_LOOP_WORDS + 1):
        repeats = _tail_repeats(words, n)
        if repeats >= MIN_LOOP_REPEATS and repeats * n >= MIN_LOOP_COVERAGE * len(words):
            return True
    return False


def _words(text: str) -> list[str]:
    stripped = (word.strip(_PUNCTUATION).lower() for word in text.split())
    return [word for word in stripped if word]


def _tail_repeats(words: list[str], n: int) -> int:
    """How many times in a row the last n words occur at the end of `words`."""
    if len(words) < n:
        return 0
    unit, repeats = words[-n:], 1
    while len(words) >= (repeats + 1) * n and words[-(repeats + 1) * n:-repeats * n] == unit:
        repeats += 1
    return repeats


def _says_no_entities(output: str) -> bool:
    return output.strip().strip(_PUNCTUATION).lower() == NO_ENTITIES_ANSWER
