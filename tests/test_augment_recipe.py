"""The `augment:` recipe section, the cache-key contribution, training data through an augmentation, the data card."""

from __future__ import annotations

import dataclasses

import pytest
from augment_suites import SENTINEL, write_augment_suite

from harness.errors import DomainbenchError
from tuning.augment.card import CARD_NAME, data_card, write_data_card
from tuning.augment.report import AugmentReport
from tuning.augment.settings import augmentation_key
from tuning.data import training_data
from tuning.recipe import load_recipe

SMALL = {"data": {"seq_len": 64, "max_dev_examples": 0}}


def recipe(strategy: str = "lora", **augment):
    return load_recipe(strategy, overrides={**SMALL, "augment": augment})


@pytest.mark.parametrize(("text", "message"), [
    ("augment:\n  method: back-translation\n", r"augment.method: 'back-translation'; expected one of none, "),
    ("augment:\n  perturb: {rat: 0.1}\n", r"augment.perturb.rat: unknown field"),
    ("augment:\n  perturb: {rate: 1.5}\n", r"augment.perturb.rate: 1.5; expected a share in \(0, 1\]"),
    ("augment:\n  perturb: {operations: [swap, synonym]}\n", r"augment.perturb.operations: \['swap', 'synonym'\]"),
    ("augment:\n  synthetic_qa: {answer_words: [5, 2]}\n", r"augment.synthetic_qa.answer_words: \[5, 2\]"),
    ("augment:\n  seed: lucky\n", r"augment.seed: expected int"),
    ("data:\n  mixture: {sft: 1}\naugment:\n  method: reading-comprehension\n",
     r"augment.method: reading-comprehension augments the cpt source, but data.mixture.cpt is 0"),
])
def test_the_augment_section_names_the_file_and_field_that_is_wrong(tmp_path, text, message):
    config = tmp_path / "recipe.yaml"
    config.write_text(text)
    with pytest.raises(DomainbenchError, match=rf"recipe.yaml: {message}"):
        load_recipe("full", config=config)


def test_a_plain_recipe_keeps_its_resolved_form_and_hash():
    plain = load_recipe("lora")
    assert not plain.augment.active and "augment" not in plain.as_dict()
    assert augmentation_key(plain.augment) is None
    assert recipe(method="perturb").as_dict()["augment"]["method"] == "perturb"


def test_the_cache_key_changes_with_the_method_its_settings_its_seed_and_the_generator():
    base = recipe(method="synthetic-qa").augment
    key = augmentation_key(base, "generator-a")
    variants = [dataclasses.replace(base, method="perturb"),
                dataclasses.replace(base, seed=base.seed + 1),
                dataclasses.replace(base, overlap_words=8),
                dataclasses.replace(base, synthetic_qa=dataclasses.replace(base.synthetic_qa, passages=5))]
    assert all(augmentation_key(variant, "generator-a") != key for variant in variants)
    assert augmentation_key(base, "generator-b") != key
    assert augmentation_key(recipe(method="perturb", perturb={"rate": 0.2}).augment) != \
        augmentation_key(recipe(method="perturb").augment)
    with pytest.raises(ValueError, match="fingerprint"):
        augmentation_key(base)


@pytest.mark.parametrize("method", ["reading-comprehension", "perturb"])
def test_training_data_augments_the_train_split_only(tmp_path, tiny_tokenizer, method):
    suite = write_augment_suite(tmp_path / "suite")
    plain = training_data(recipe().data, tiny_tokenizer, suite, seed=0)
    augmented_recipe = recipe(method=method)
    augmented = training_data(augmented_recipe.data, tiny_tokenizer, suite, seed=0, augment=augmented_recipe.augment)
    assert augmented.summary["train"]["fingerprint"] != plain.summary["train"]["fingerprint"]
    assert augmented.summary["dev"] == plain.summary["dev"]                     # dev stays plain
    assert augmented.summary["augment"] == augmented.augmentation.as_dict()
    assert "augment" not in plain.summary and plain.augmentation is None
    decoded = [tiny_tokenizer.decode(example["input_ids"]) for example in augmented.train]
    assert not any(SENTINEL in text for text in decoded)


def test_synthetic_qa_without_a_generator_is_a_user_error(tmp_path, tiny_tokenizer):
    suite = write_augment_suite(tmp_path / "suite")
    augmented = recipe(method="synthetic-qa")
    with pytest.raises(DomainbenchError, match="synthetic-qa needs a generator"):
        training_data(augmented.data, tiny_tokenizer, suite, seed=0, augment=augmented.augment)


def test_the_data_card_shows_counts_reasons_and_fenced_examples(tmp_path):
    report = AugmentReport("synthetic-qa", {"passages": 2})
    report.read = 2
    report.keep("question-answer pair", "Q: What does fsync flush?\nA: the data")
    report.drop("answer not in the passage", "Q: Which `code` is this?\nA: ```python")
    path = write_data_card(report, tmp_path)
    card = path.read_text(encoding="utf-8")
    assert path.name == CARD_NAME
    assert "Read 2 train-split items; kept 1 augmented pieces, dropped 1." in card
    assert "| question-answer pair | 1 |" in card and "| answer not in the passage | 1 |" in card
    assert "```text\nQ: What does fsync flush?\nA: the data\n```" in card
    assert "````text\nQ: Which `code` is this?\nA: ```python\n````" in card   # a longer fence than the text's
    assert data_card(AugmentReport.from_dict(report.as_dict())) == card         # from an artifact manifest


def test_an_augmented_adapter_records_its_report_and_key_and_the_card_is_written_from_the_manifest(
        tiny_model_dir, tmp_path):
    from harness.manifest import read_manifest
    from tuning.peft_adapters import tune_adapter

    suite = write_augment_suite(tmp_path / "suite")
    train = {"data": {"seq_len": 48, "max_train_examples": 16, "max_dev_examples": 4},
             "train": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "warmup_steps": 1, "eval_every": 2,
                       "checkpoint_every": 2}}
    plain = tune_adapter(str(tiny_model_dir), suite, load_recipe("lora", overrides=train), output=tmp_path / "plain")
    rc = load_recipe("lora", overrides={**train, "augment": {"method": "reading-comprehension"}})
    augmented = tune_adapter(str(tiny_model_dir), suite, rc, output=tmp_path / "rc")
    manifest = read_manifest(augmented)
    assert manifest["input_hash"] != read_manifest(plain)["input_hash"]
    assert manifest["recipe"]["augment"]["method"] == "reading-comprehension"
    card = write_data_card(AugmentReport.from_dict(manifest["inputs"]["data"]["augment"]), tmp_path).read_text()
    assert card.startswith("# Augmented training data: reading-comprehension") and "| title | 8 |" in card
