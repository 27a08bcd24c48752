"""ROUGE equals rouge_score's scorer called directly; BLEU equals sacrebleu.corpus_bleu."""

import numpy as np
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from tasks.metrics import (
    ROUGE_TYPES,
    bleu_signature,
    bleu_statistics,
    corpus_bleu_from_statistics,
    rouge_f1,
)

PAIRS = [
    ("open and possibly create a file", "open and possibly create a file"),
    ("opens files, creating them", "open and possibly create a file"),
    ("The cats were running quickly.\nThey stopped.", "A cat runs quick.\nIt stops."),
    ("", "close a file descriptor"),
    ("write to a file descriptor", ""),
    ("rename(2) moves files between directories", "change the name or location of a file"),
]


@pytest.mark.parametrize("prediction, reference", PAIRS)
def test_rouge_equals_rouge_scorer_with_stemming(prediction, reference):
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    expected = scorer.score(reference, prediction)
    assert rouge_f1(prediction, reference) == {name: expected[name].fmeasure for name in ROUGE_TYPES}


def corpus_bleu_from_sentences(predictions, references):
    summed = np.sum([bleu_statistics(p, r) for p, r in zip(predictions, references)], axis=0)
    return corpus_bleu_from_statistics(summed)


def test_corpus_bleu_equals_sacrebleu():
    predictions = [p for p, _ in PAIRS]
    references = [r for _, r in PAIRS]
    expected = sacrebleu.corpus_bleu(predictions, [references])
    assert corpus_bleu_from_sentences(predictions, references) == pytest.approx(expected.score, abs=1e-9)


_WORDS = st.sampled_from(["the", "file", "descriptor", "open", "close", "a", "is", "returned", ",", ".",
                          "(2)", "errno", "EINTR", "Don't", "x-y"])
_SENTENCE = st.lists(_WORDS, max_size=12).map(" ".join)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_SENTENCE, _SENTENCE), min_size=1, max_size=6))
def test_corpus_bleu_from_summed_statistics_equals_sacrebleu_on_random_corpora(pairs):
    predictions = [p for p, _ in pairs]
    references = [r for _, r in pairs]
    expected = sacrebleu.corpus_bleu(predictions, [references]).score
    assert corpus_bleu_from_sentences(predictions, references) == pytest.approx(expected, abs=1e-9)


def test_bleu_signature_names_sacrebleu_defaults():
    signature = bleu_signature()
    assert "tok:13a" in signature and "smooth:exp" in signature and f"version:{sacrebleu.__version__}" in signature
