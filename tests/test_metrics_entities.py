"""Entity-level precision/recall/F1 agree with seqeval on BIO-tagged data, converted both ways."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import (
    classification_report,
    f1_score,
    precision_score,
    recall_score,
)

from tasks.metrics import entity_counts, precision_recall_f1

TYPES = ("PER", "ORG", "LOC")


def bio_from_entities(n_tokens, entities):
    tags = ["O"] * n_tokens
    for entity_type, start, end in entities:
        tags[start] = f"B-{entity_type}"
        for i in range(start + 1, end):
            tags[i] = f"I-{entity_type}"
    return tags


def entities_from_bio(tags):
    """IOB2 chunks as conlleval reads them: an I- after O or after another type opens a chunk."""
    entities, current = [], None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, entity_type = tag.partition("-")
        if current and (prefix != "I" or entity_type != current[0]):
            entities.append((current[0], current[1], i))
            current = None
        if prefix in ("B", "I") and current is None:
            current = [entity_type, i]
    return entities


def our_scores(gold_sentences, predicted_sentences):
    totals: dict[str, list[int]] = {}
    for gold, predicted in zip(gold_sentences, predicted_sentences):
        for entity_type, counts in entity_counts(gold, predicted).items():
            row = totals.setdefault(entity_type, [0, 0, 0])
            for k in range(3):
                row[k] += counts[k]
    micro = precision_recall_f1(*(sum(row[k] for row in totals.values()) for k in range(3)))
    per_type = {t: precision_recall_f1(*row) for t, row in totals.items()}
    return micro, per_type


def assert_agrees_with_seqeval(gold_tags, predicted_tags, gold_entities, predicted_entities):
    (precision, recall, f1), per_type = our_scores(gold_entities, predicted_entities)
    assert precision == pytest.approx(precision_score(gold_tags, predicted_tags))
    assert recall == pytest.approx(recall_score(gold_tags, predicted_tags))
    assert f1 == pytest.approx(f1_score(gold_tags, predicted_tags))
    report = classification_report(gold_tags, predicted_tags, output_dict=True, zero_division=0)
    for entity_type, (p, r, f) in per_type.items():
        assert (p, r, f) == pytest.approx((report[entity_type]["precision"], report[entity_type]["recall"],
                                           report[entity_type]["f1-score"]))


@st.composite
def entity_sets(draw, n_tokens):
    """Non-overlapping typed spans over n_tokens tokens."""
    entities, position = [], 0
    while position < n_tokens:
        position += draw(st.integers(0, 2))
        length = draw(st.integers(1, 3))
        if position + length > n_tokens:
            break
        entities.append((draw(st.sampled_from(TYPES)), position, position + length))
        position += length
    return entities


@st.composite
def sentence_pairs(draw):
    n_tokens = draw(st.integers(1, 12))
    gold = draw(entity_sets(n_tokens))
    # Predictions: some gold entities kept, some retyped or shifted, some new.
    predicted = draw(st.one_of(st.just(gold), entity_sets(n_tokens)))
    return n_tokens, gold, predicted


@settings(max_examples=200, deadline=None)
@given(st.lists(sentence_pairs(), min_size=1, max_size=6))
def test_entity_f1_equals_seqeval_on_spans_converted_to_bio(sentences):
    gold_tags = [bio_from_entities(n, gold) for n, gold, _ in sentences]
    predicted_tags = [bio_from_entities(n, predicted) for n, _, predicted in sentences]
    if not any(gold for _, gold, _ in sentences):
        return  # seqeval's recall is undefined (0/0 warning) without gold entities
    assert_agrees_with_seqeval(gold_tags, predicted_tags, [g for _, g, _ in sentences],
                               [p for _, _, p in sentences])


_TAGS = st.sampled_from(["O", "O", *(f"{p}-{t}" for p in "BI" for t in TYPES)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 10).flatmap(lambda n: st.tuples(st.lists(_TAGS, min_size=n, max_size=n),
                                                                 st.lists(_TAGS, min_size=n, max_size=n))),
                min_size=1, max_size=6))
def test_entity_f1_equals_seqeval_on_bio_converted_to_spans(tag_pairs):
    """Any tag sequence, ill-formed ones (I- after O) included."""
    gold_tags = [gold for gold, _ in tag_pairs]
    predicted_tags = [predicted for _, predicted in tag_pairs]
    if not any(entities_from_bio(tags) for tags in gold_tags):
        return
    assert_agrees_with_seqeval(gold_tags, predicted_tags, [entities_from_bio(t) for t in gold_tags],
                               [entities_from_bio(t) for t in predicted_tags])


def test_no_predictions_score_zero_precision_like_seqeval():
    gold = [["B-PER", "I-PER", "O"]]
    predicted = [["O", "O", "O"]]
    assert_agrees_with_seqeval(gold, predicted, [entities_from_bio(gold[0])], [[]])
