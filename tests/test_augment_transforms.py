"""Augmentations of the train split: deterministic for a seed, blind to the test split, test overlaps dropped."""

from __future__ import annotations

import json
import random
import re

import pytest
from augment_suites import PLANTED_QUESTION, SENTINEL, page_text, write_augment_suite

from tuning.augment import apply
from tuning.augment.apply import augment_train_split
from tuning.augment.perturb import perturbed_words
from tuning.augment.reading import mined_exercises
from tuning.data import corpus_records, suite_corpus
from tuning.recipe import load_recipe

METHODS = ["reading-comprehension", "perturb", "synthetic-qa"]
_PASSAGE = re.compile(r"Passage:\n(?P<passage>.*?)\n\nWrite each question", re.DOTALL)


def passage_generator(prompts: list[str]) -> list[str]:
    """A fake generator: one question per passage, answered by a phrase the passage holds."""
    outputs = []
    for prompt in prompts:
        words = _PASSAGE.search(prompt)["passage"].split()
        outputs.append(f" What does {words[1]} flush?\nA: {' '.join(words[4:7])}\n")
    return outputs


def augment(method: str, suite, *, seed: int = 1234, generate=passage_generator, **settings):
    section = {"method": method, "seed": seed, **settings}
    config = load_recipe("lora", overrides={"augment": section}).augment
    corpus = corpus_records(suite_corpus(suite), "train")
    return augment_train_split(config, suite, corpus=corpus, task_names=[], generate=generate)


def outcome(result) -> tuple:
    return result.texts, result.pairs, result.report.as_dict()


@pytest.fixture
def suite(tmp_path):
    return write_augment_suite(tmp_path / "suite")


@pytest.mark.parametrize("method", METHODS)
def test_each_augmentation_is_deterministic_for_a_seed(suite, method):
    settings = {"synthetic_qa": {"passages": 3}} if method == "synthetic-qa" else {}
    first = augment(method, suite, seed=7, **settings)
    assert sum(first.report.kept.values()) > 0
    assert outcome(augment(method, suite, seed=7, **settings)) == outcome(first)
    assert outcome(augment(method, suite, seed=8, **settings)) != outcome(first)


@pytest.mark.parametrize("method", METHODS)
def test_augmentations_are_handed_no_test_split_text(suite, method, monkeypatch):
    handed, prompts = [], []
    for name in ("reading_comprehension", "perturbed_pairs", "synthetic_qa_pairs"):
        transform = getattr(apply, name)

        def spy(first, *args, transform=transform, **kwargs):
            handed.append(json.dumps(first, default=lambda task: task.examples))
            return transform(first, *args, **kwargs)
        monkeypatch.setattr(apply, name, spy)

    def generate(batch):
        prompts.extend(batch)
        return passage_generator(batch)

    result = augment(method, suite, generate=generate)
    assert handed and all(SENTINEL not in text for text in handed)
    assert all(SENTINEL not in prompt for prompt in prompts)
    assert SENTINEL not in json.dumps(outcome(result))
    # the sentinel is there to be seen: the test split holds it
    assert any(SENTINEL in example["question"] for example in suite.tasks[0].examples["test"])


def test_a_planted_test_question_is_dropped_and_counted_by_reading_comprehension(tmp_path):
    suite = write_augment_suite(tmp_path / "suite")
    record = {"id": "planted.2", "title": "planted(2)", "text": page_text("plantz") + "\n       " + PLANTED_QUESTION}
    config = load_recipe("full", overrides={"augment": {"method": "reading-comprehension",
                                                        "reading_comprehension": {"per_kind": 50}}}).augment
    result = augment_train_split(config, suite, corpus=[record], task_names=[])
    assert result.report.dropped["overlaps the test split"] >= 1
    [dropped] = result.report.dropped_examples["overlaps the test split"][:1]
    assert "errno-qa/test-planted" in dropped
    appended = result.texts[0][len(record["text"]):]
    assert "socket and not to a regular file" not in appended


def test_a_planted_test_question_is_dropped_and_counted_by_perturb(tmp_path):
    suite = write_augment_suite(tmp_path / "suite", extra_train_questions=(PLANTED_QUESTION,))
    result = augment("perturb", suite, perturb={"copies": 3})
    assert result.report.dropped["overlaps the test split"] == 3
    assert not any("regular file" in prompt for prompt, _ in result.pairs)


def test_a_planted_test_question_is_dropped_and_counted_by_synthetic_qa(suite):
    def copying_generator(prompts):
        return [f" {PLANTED_QUESTION}\nA: storage device\nQ: Where does the data go?\nA: the storage device"
                for _ in prompts]

    result = augment("synthetic-qa", suite, generate=copying_generator, synthetic_qa={"passages": 2})
    assert result.report.dropped["overlaps the test split"] == 2
    assert result.report.dropped["duplicate question"] == 1      # the second passage's second question
    assert [prompt for prompt, _ in result.pairs] == ["Question: Where does the data go?\nAnswer:"]


def test_perturbation_never_changes_the_completion(suite):
    from tuning.data import suite_pairs

    result = augment("perturb", suite, perturb={"copies": 2, "rate": 0.3})
    originals = {completion for _, completion in suite_pairs(suite, "train", [])}
    assert len(result.pairs) > 8 and {completion for _, completion in result.pairs} <= originals
    # NER's target is spans of its input text: a copy that moves them is not made
    assert result.report.dropped["the perturbed input is part of the target"] >= 1
    assert result.report.read == 8 + 3


@pytest.mark.parametrize("operation", ["swap", "delete", "insert"])
def test_perturbed_words_swap_delete_or_insert_words_of_the_same_text(operation):
    words = "the kernel flushes the buffered data of the descriptor to the device".split()
    changed = perturbed_words(words, operation, 0.2, random.Random(0))
    assert changed != words
    if operation == "swap":
        assert sorted(changed) == sorted(words)
    elif operation == "delete":
        assert len(changed) < len(words) and all(word in words for word in changed)
    else:
        assert len(changed) == len(words) + 2 and set(changed) == set(words)


def test_reading_comprehension_mines_each_kind_from_prose():
    record = {"title": "fsyncat(2)", "text": page_text("fsyncat")}
    terms = {term.lower(): term for term in ("kernel", "filesystem", "descriptor", "device")}
    found = mined_exercises(record, terms, random.Random(0))
    assert set(found) == {"title", "keywords", "inference", "cause", "paraphrase", "completion"}
    assert ("What is the title of this text?", "fsyncat(2)", "fsyncat(2)") in found["title"]
    verdicts = sorted(answer for _, answer, _ in found["inference"])
    assert verdicts == ["No", "Yes"]                                 # "Therefore," and "However,"
    assert any(answer.startswith("The kernel waits for the write barrier") for _, answer, _ in found["cause"])
