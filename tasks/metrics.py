"""Metric functions shared by the task types, each matching its reference implementation.

- exact match, token F1 and answer containment: the SQuAD v1.1 official evaluation script's
  normalisation;
- entity precision/recall/F1: strict span+type match, as seqeval computes on BIO tags;
- ROUGE: the `rouge-score` package with stemming;
- BLEU: `sacrebleu` with its defaults, from per-example sufficient statistics so that corpus BLEU
  can be recomputed on any resample of the examples.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from stats.statistic import safe_divide, safe_ratio

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
BLEU_ORDER = 4

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


# ----- SQuAD v1.1 ---------------------------------------------------------------------------------

def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop articles, squeeze whitespace (SQuAD v1.1 order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Iterable[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference."""
    normalized = normalize_answer(prediction)
    return max((float(normalized == normalize_answer(ref)) for ref in references), default=0.0)


def answer_containment(prediction: str, references: Iterable[str]) -> float:
    """1.0 if any normalised reference appears in the normalised prediction as whole tokens.

    The companion of EM/F1 in retrieval-augmented QA (as in the RAG and Atlas papers' "answer
    contained"): a free-form answer that says "It returns EXDEV." is right though not exact.
    """
    predicted = f" {normalize_answer(prediction)} "
    return max((float(f" {gold} " in predicted) for gold in map(normalize_answer, references) if gold), default=0.0)


def token_f1(prediction: str, references: Iterable[str]) -> float:
    """Best bag-of-tokens F1 of the prediction against any reference."""
    return max((_token_f1(prediction, ref) for ref in references), default=0.0)


def _token_f1(prediction: str, reference: str) -> float:
    predicted = normalize_answer(prediction).split()
    gold = normalize_answer(reference).split()
    # v1.1 has no special case for empty answers (v2.0 added one): no common token means 0.
    n_common = sum((Counter(predicted) & Counter(gold)).values())
    if n_common == 0:
        return 0.0
    precision = n_common / len(predicted)
    recall = n_common / len(gold)
    return 2 * precision * recall / (precision + recall)


# ----- entities -----------------------------------------------------------------------------------

Entity = tuple[str, int, int]  # (type, start, end): a span and its type


def entity_counts(gold: Iterable[Entity], predicted: Iterable[Entity]) -> dict[str, list[int]]:
    """Per entity type [true positives, false positives, false negatives], strict span+type match."""
    gold_set, predicted_set = set(gold), set(predicted)
    counts: dict[str, list[int]] = {}
    for entity in gold_set | predicted_set:
        row = counts.setdefault(entity[0], [0, 0, 0])
        if entity in gold_set and entity in predicted_set:
            row[0] += 1
        elif entity in predicted_set:
            row[1] += 1
        else:
            row[2] += 1
    return counts


def precision_recall_f1(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """P, R and F1 from counts; 0 wherever a denominator is 0 (as seqeval reports it)."""
    precision = safe_ratio(tp, tp + fp)
    recall = safe_ratio(tp, tp + fn)
    return precision, recall, safe_ratio(2 * precision * recall, precision + recall)


def precision_recall_f1_arrays(tp, fp, fn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`precision_recall_f1` elementwise over arrays of counts (resamples of a corpus at once)."""
    precision = safe_divide(tp, np.add(tp, fp))
    recall = safe_divide(tp, np.add(tp, fn))
    return precision, recall, safe_divide(2 * precision * recall, precision + recall)


# ----- ROUGE and BLEU -----------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_f1(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measures of one prediction (rougeLsum splits sentences on newlines)."""
    scores = _rouge_scorer().score(reference, prediction)
    return {name: scores[name].fmeasure for name in ROUGE_TYPES}


@lru_cache(maxsize=1)
def _bleu():
    from sacrebleu.metrics import BLEU

    return BLEU()


def bleu_statistics(prediction: str, reference: str) -> list[int]:
    """sacrebleu's sufficient statistics of one sentence: matches[4], totals[4], sys_len, ref_len.

    Summing them over sentences and calling `corpus_bleu_from_statistics` equals
    `sacrebleu.corpus_bleu` on those sentences: its default 13a tokenizer works sentence by sentence.
    """
    score = _bleu().corpus_score([prediction], [[reference]])
    return [*score.counts, *score.totals, score.sys_len, score.ref_len]


def corpus_bleu_of_sums(sums: np.ndarray, n: int) -> np.ndarray:
    """Corpus BLEU of summed `bleu_statistics` (..., 10), one score per leading index (sacrebleu's own formula)."""
    flat = np.asarray(sums, dtype=float).reshape(-1, 2 * BLEU_ORDER + 2)
    return np.array([corpus_bleu_from_statistics(row) for row in flat]).reshape(np.shape(sums)[:-1])


def corpus_bleu_from_statistics(summed: Iterable[float]) -> float:
    """Corpus BLEU (0-100) from summed `bleu_statistics` rows, with sacrebleu's default smoothing."""
    summed = [int(round(x)) for x in summed]
    metric = _bleu()
    score = metric.compute_bleu(
        correct=summed[:BLEU_ORDER], total=summed[BLEU_ORDER:2 * BLEU_ORDER],
        sys_len=summed[2 * BLEU_ORDER], ref_len=summed[2 * BLEU_ORDER + 1],
        smooth_method=metric.smooth_method, smooth_value=metric.smooth_value,
        effective_order=metric.effective_order, max_ngram_order=metric.max_ngram_order)
    return float(score.score)


def bleu_signature() -> str:
    """sacrebleu's signature of the BLEU settings used, kept in result files."""
    metric = _bleu()
    # sacrebleu only knows the number of references once it has scored something.
    metric.corpus_score(["signature"], [["signature"]])
    return str(metric.get_signature())
