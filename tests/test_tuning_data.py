"""Training data and recipes: answer-only labels, packing, mixtures, the test-split guard, validation."""

from __future__ import annotations

import gzip
import json

import pytest

from harness.errors import DomainbenchError
from tuning.data import (
    check_split,
    corpus_texts,
    mixture,
    packed_sequences,
    sft_examples,
    suite_pairs,
    training_data,
)
from tuning.loss import IGNORE_INDEX
from tuning.recipe import load_recipe


def write_suite(root, n_train: int = 24, n_dev: int = 8):
    """A one-task QA suite plus a corpus, small enough to train the tiny model on in seconds."""
    from tasks.suite import load_suite

    errnos = ["EINVAL", "ENOENT", "EACCES", "EEXIST", "EINTR"]
    rows = {split: [{"id": f"{split}-{i}", "question": f"Which errno does open() return for case {i}?",
                     "answers": [errnos[i % len(errnos)]]} for i in range(count)]
            for split, count in (("train", n_train), ("dev", n_dev), ("test", 6))}
    (root / "qa").mkdir(parents=True)
    for split, examples in rows.items():
        with gzip.open(root / "qa" / f"{split}.jsonl.gz", "wt") as handle:
            handle.writelines(json.dumps(example) + "\n" for example in examples)
    (root / "suite.yaml").write_text(
        "name: tiny\nversion: 1\ncorpus: corpus.jsonl.gz\ntasks:\n  - name: errno-qa\n    type: qa\n"
        "    data: {train: qa/train.jsonl.gz, dev: qa/dev.jsonl.gz, test: qa/test.jsonl.gz}\n"
        "    template: \"Question: {question}\\nAnswer:\"\n    num_fewshot: 0\n    metrics: [exact_match]\n"
        "    generation: {max_new_tokens: 8, stop: [\"\\n\"]}\n")
    text = ("The open() system call opens the file specified by pathname. On error, -1 is returned and errno "
            "is set: EACCES, EEXIST, ENOENT, EINVAL. The rename() function renames a file. ")
    with gzip.open(root / "corpus.jsonl.gz", "wt") as handle:
        for i, split in enumerate(["train"] * 12 + ["dev"] * 4 + ["test"] * 4):
            handle.write(json.dumps({"id": f"page{i}", "title": f"page{i}(2)", "section": "2", "split": split,
                                     "text": f"PAGE {i} ({split}). " + text * 3}) + "\n")
    return load_suite(root)


def test_sft_labels_mask_the_prompt_and_keep_the_answer(tiny_tokenizer):
    [example] = sft_examples([("Question: Which errno?\nAnswer:", " EINVAL")], tiny_tokenizer, seq_len=64)
    labelled = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert example["input_ids"][0] == tiny_tokenizer.bos_token_id
    assert tiny_tokenizer.decode(labelled) == " EINVAL" + tiny_tokenizer.eos_token
    prompt_part = [t for t, label in zip(example["input_ids"][1:], example["labels"][1:]) if label == IGNORE_INDEX]
    assert tiny_tokenizer.decode(prompt_part) == "Question: Which errno?\nAnswer:"


def test_sft_truncation_drops_prompt_tokens_first(tiny_tokenizer):
    [example] = sft_examples([("word " * 50 + "Answer:", " EINVAL")], tiny_tokenizer, seq_len=12)
    assert len(example["input_ids"]) == 12
    labelled = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert tiny_tokenizer.decode(labelled).startswith(" EINVAL")


def test_packed_sequences_have_equal_length_and_full_labels(tiny_tokenizer):
    sequences = packed_sequences(["The open() system call. " * 20, "rename() renames a file. " * 20],
                                 tiny_tokenizer, seq_len=32)
    assert len(sequences) > 2
    assert all(len(s["input_ids"]) == 32 and s["labels"] == s["input_ids"] for s in sequences)
    assert all(s["input_ids"][0] == tiny_tokenizer.bos_token_id for s in sequences)


def test_mixture_keeps_the_set_proportions():
    sources = {"cpt": [{"id": ("cpt", i)} for i in range(100)], "sft": [{"id": ("sft", i)} for i in range(30)]}
    mixed = mixture(sources, {"cpt": 0.75, "sft": 0.25}, seed=0)
    counts = {name: sum(1 for e in mixed if e["id"][0] == name) for name in sources}
    assert counts == {"cpt": 90, "sft": 30}
    assert mixed == mixture(sources, {"cpt": 0.75, "sft": 0.25}, seed=0)


@pytest.mark.parametrize("split", ["test", "validation"])
def test_only_train_and_dev_splits_are_trainable(split):
    with pytest.raises(DomainbenchError, match="test split is never used" if split == "test" else "expected one of"):
        check_split(split, what="corpus")


def test_test_split_is_refused_for_corpus_and_task_pairs(tmp_path):
    suite = write_suite(tmp_path / "suite")
    with pytest.raises(DomainbenchError, match="test split"):
        corpus_texts(tmp_path / "suite" / "corpus.jsonl.gz", "test")
    with pytest.raises(DomainbenchError, match="test split"):
        suite_pairs(suite, "test", [])


def test_training_data_never_contains_test_records(tmp_path, tiny_tokenizer):
    suite = write_suite(tmp_path / "suite")
    recipe = load_recipe("lora", overrides={"data": {"seq_len": 64, "max_dev_examples": 0}})
    data = training_data(recipe.data, tiny_tokenizer, suite, seed=0)
    texts = [tiny_tokenizer.decode(e["input_ids"]) for e in data.train + data.dev]
    assert not any("(test)" in text or "test-" in text for text in texts)
    assert data.summary["train"]["examples"] == len(data.train) and data.summary["dev"]["fingerprint"]


def test_recipe_profile_overrides_defaults():
    recipe = load_recipe("lora", profile="quick")
    assert recipe.data.seq_len == 128 and recipe.train.max_steps == 30
    assert recipe.method["adapter"]["r"] == 16 and recipe.profile == "quick"


def test_recipe_names_the_unknown_or_mistyped_field(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("train:\n  learning_rat: 0.1\n")
    with pytest.raises(DomainbenchError, match=r"recipe.yaml: train.learning_rat: unknown field"):
        load_recipe("lora", config=config)
    config.write_text("train:\n  max_steps: many\n")
    with pytest.raises(DomainbenchError, match=r"train.max_steps: expected int"):
        load_recipe("lora", config=config)
    config.write_text("data:\n  mixture: {cpt: 1, books: 1}\n")
    with pytest.raises(DomainbenchError, match=r"data.mixture.books: unknown source"):
        load_recipe("full", config=config)
    config.write_text("train:\n  mixed_precision: fp8\n")
    with pytest.raises(DomainbenchError, match=r"train.mixed_precision: 'fp8'; expected one of auto, bf16, fp32"):
        load_recipe("full", config=config)


def test_a_user_recipe_wins_over_the_builtin_profile(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("train:\n  learning_rate: 2.0e-4\nprofiles:\n  quick:\n    train: {max_steps: 7}\n")
    recipe = load_recipe("lora", config=config, profile="quick")
    assert recipe.train.learning_rate == 2.0e-4       # the quick profile says 1e-3; the user's file wins
    assert recipe.train.max_steps == 7                 # the user's own quick profile applies
    assert recipe.data.seq_len == 128                  # what the user left alone keeps the profile's value
