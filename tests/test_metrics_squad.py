"""Exact match and token F1 agree with the SQuAD v1.1 official evaluation script."""

import re
import string
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.metrics import answer_containment, exact_match, normalize_answer, token_f1

# ----- reference: the SQuAD v1.1 official evaluate-v1.1.py, verbatim -----------------------------

def squad_normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def squad_f1_score(prediction, ground_truth):
    prediction_tokens = squad_normalize_answer(prediction).split()
    ground_truth_tokens = squad_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def squad_exact_match_score(prediction, ground_truth):
    return (squad_normalize_answer(prediction) == squad_normalize_answer(ground_truth))


def squad_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


# ----- tests -------------------------------------------------------------------------------------

TRICKY = [
    ("The Eiffel Tower", ["eiffel tower"]),
    ("an apple a day", ["apple day"]),
    ("theatre", ["the atre"]),                     # "the" inside a word is not an article
    ("  Paris,   France. ", ["paris france"]),
    ("U.S.A.", ["USA"]),
    ("-1", ["1"]),                                 # the minus sign is punctuation
    ("<fcntl.h>", ["fcntlh", "fcntl.h"]),
    ("A", ["a"]),                                  # only an article: normalises to empty
    ("", ["the"]),
    ("", [""]),
    ("renames a file", ["It renames a file.", "renames a file"]),
    ("the cat the cat", ["cat"]),                   # repeated tokens count once per reference token
    ("New\tYork\ncity", ["new york"]),
    ("Ünïcödé—dash", ["ünïcödé—dash"]),            # non-ASCII punctuation is kept, as in the script
    ("EACCES or EPERM", ["EPERM", "EACCES"]),
]


@pytest.mark.parametrize("prediction, answers", TRICKY)
def test_exact_match_and_f1_equal_official_script_on_tricky_cases(prediction, answers):
    assert normalize_answer(prediction) == squad_normalize_answer(prediction)
    assert exact_match(prediction, answers) == float(
        squad_metric_max_over_ground_truths(squad_exact_match_score, prediction, answers))
    assert token_f1(prediction, answers) == pytest.approx(
        squad_metric_max_over_ground_truths(squad_f1_score, prediction, answers))


_WORDS = st.sampled_from(["a", "an", "the", "The", "A", "cat", "cats", "sat", "on", "mat", ".", ",", "!",
                          "'s", "(x)", "-1", "é", "", " ", "\t", "\n", "theatre"])
_TEXT = st.lists(_WORDS, max_size=8).map(lambda parts: " ".join(parts))


@settings(max_examples=300, deadline=None)
@given(prediction=_TEXT, answers=st.lists(_TEXT, min_size=1, max_size=3))
def test_metrics_equal_official_script_on_random_text(prediction, answers):
    assert exact_match(prediction, answers) == float(
        squad_metric_max_over_ground_truths(squad_exact_match_score, prediction, answers))
    assert token_f1(prediction, answers) == pytest.approx(
        squad_metric_max_over_ground_truths(squad_f1_score, prediction, answers))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_normalisation_equals_official_script_on_any_text(text):
    assert normalize_answer(text) == squad_normalize_answer(text)


@pytest.mark.parametrize(("prediction", "answers", "contained"), [
    ("It returns EXDEV.", ["EXDEV"], 1.0),
    ("EXDEVICE", ["EXDEV"], 0.0),              # whole tokens only
    ("the <fcntl.h> header", ["<fcntl.h>"], 1.0),
    ("", ["EXDEV"], 0.0),
    ("EBADF or EINVAL", ["EINVAL", "EFAULT"], 1.0),
])
def test_answer_containment_finds_a_normalised_answer_inside_the_prediction(prediction, answers, contained):
    assert answer_containment(prediction, answers) == contained
    if exact_match(prediction, answers):
        assert contained == 1.0  # an exact answer is always contained
