"""The degenerate-output detector: empty answers, repetition loops, NER output its parser cannot read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tasks import ner
from tasks.degenerate import (
    EMPTY,
    LOOP,
    NO_ENTITIES_ANSWER,
    OK,
    UNPARSEABLE,
    classify_entity_output,
    classify_text,
)

LABELS = ("FUNCTION", "ERRNO")


@pytest.mark.parametrize("text", ["", "   ", "\n\n", None])
def test_whitespace_or_nothing_is_empty(text):
    assert classify_text(text) == EMPTY


@pytest.mark.parametrize("text", [
    "the the the",                                       # one word, three times
    "EINVAL, EINVAL, EINVAL.",                           # punctuation and case do not hide a loop
    "open a file and open a file and open a file and",   # a 4-word unit cut off mid-repeat by the budget
    "Returns the value. the value the value the value",  # a prefix, then a loop covering most of the text
])
def test_a_short_ngram_repeated_to_the_end_is_a_loop(text):
    assert classify_text(text) == LOOP


@pytest.mark.parametrize("text", [
    "EINVAL",
    "no no",                                                        # two repeats are not a loop
    "close a file descriptor, close it again",
    "a b c d e a b c d e a b c d e",                                # a 5-word unit is longer than a loop unit
    "Print the number of lines, words and bytes in each file, very very very",  # repeats cover under half
])
def test_ordinary_text_is_ok(text):
    assert classify_text(text) == OK


def _entity_verdict(output: str) -> str:
    types = [entity["type"] for entity in ner.parse_entities(output, "", LABELS)]
    return classify_entity_output(output, types, LABELS)


@pytest.mark.parametrize("output, verdict", [
    ("FUNCTION: open\nERRNO: EINVAL", OK),
    ("- errno: EINVAL", OK),                 # the parser's bullets and case-insensitive types
    ("none", OK),                            # the no-entities answer is an answer
    (" None.", OK),
    ("The function open fails.", UNPARSEABLE),
    ("Entities: open, EINVAL", UNPARSEABLE),  # parsed, but "Entities" is no declared type
    ("", EMPTY),
    ("ERRNO: EINVAL ERRNO: EINVAL ERRNO: EINVAL", LOOP),
])
def test_ner_output_is_judged_by_what_the_task_parser_reads(output, verdict):
    assert _entity_verdict(output) == verdict


def test_the_no_entities_answer_is_the_ner_task_target():
    assert NO_ENTITIES_ANSWER == ner.NO_ENTITIES


def test_the_detector_does_not_import_torch():
    code = "import sys, tasks.degenerate; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
