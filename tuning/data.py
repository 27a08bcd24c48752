"""Training data: packed corpus sequences, answer-only SFT examples, and mixtures of the two.

An example is `{"input_ids": [...], "labels": [...]}` with IGNORE_INDEX where no loss is taken.
Every sequence starts with the prefix token (BOS, else EOS), as the engine scores them, so a
model is trained on exactly the token layout it is evaluated on. Test splits never reach here
(the augmentations' test-overlap guard, tuning/augment/overlap.py, reads them only to refuse text).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engines.tokens import count_tokens, encode_pairs, prefix_token_id
from harness.errors import DomainbenchError
from tuning.loss import IGNORE_INDEX

if TYPE_CHECKING:
    from tuning.augment.report import AugmentReport
    from tuning.augment.settings import AugmentConfig
    from tuning.augment.synthetic_qa import Generator

TRAINABLE_SPLITS = ("train", "dev")


def data_problems(config, suite, *, who: str, recipe_file: str,
                  corpus_splits: Callable[[], tuple[set, list[str]]]) -> list[str]:
    """What `training_data` will read for the data block `config` (a recipe's), checked against `suite`
    before anything trains: one line per problem, each starting with `who` or the recipe file.

    `corpus_splits()` reads the suite's corpus once for every check that asks: its record splits and
    its problems.
    """
    suite_yaml = Path(suite.path) / "suite.yaml"
    shares = {source for source, share in config.mixture.items() if share > 0}
    problems = []
    if "cpt" in shares:
        why = f"{who} trains on the corpus (data.mixture.cpt in {recipe_file})"
        if suite.corpus is None:
            problems.append(f"{why}, but {suite_yaml} names no corpus")
        else:
            splits, unreadable = corpus_splits()
            problems += unreadable or [f"{why}, but corpus {suite.corpus} has no {split!r} records"
                                       for split in TRAINABLE_SPLITS if split not in splits]
    if "sft" in shares:
        try:
            tasks = suite.select(config.tasks or None)
        except DomainbenchError as exc:
            return [*problems, f"{recipe_file}: data.tasks: {exc}"]
        why = f"{who} trains on task examples (data.mixture.sft in {recipe_file})"
        problems += [f"{why}, but no task of {suite_yaml} has a {split} split"
                     for split in TRAINABLE_SPLITS if not any(split in task.examples for task in tasks)]
    return problems


def check_split(split: str, *, what: str) -> None:
    """Refuse anything but train (training) and dev (early stopping): a test split would leak."""
    if split == "test":
        raise DomainbenchError(f"{what}: the test split is never used for training or early stopping")
    if split not in TRAINABLE_SPLITS:
        raise DomainbenchError(f"{what}: split {split!r}: expected one of {', '.join(TRAINABLE_SPLITS)}")


def suite_corpus(suite) -> Path:
    """The corpus a loaded Suite names (its suite.yaml `corpus:` field)."""
    if suite.corpus is None:
        raise DomainbenchError(f"suite {suite.name}: names no corpus in suite.yaml (needed for continued pre-training, "
                               "reading-comprehension and synthetic-qa)")
    return suite.corpus


def corpus_records(path: Path, split: str) -> list[dict]:
    """The corpus records of one split (records: id, title, section, split, text)."""
    check_split(split, what=f"corpus {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DomainbenchError(f"{path}:{line_number}: not JSON: {exc}") from exc
            if record.get("split") == split:
                records.append(record)
    if not records:
        raise DomainbenchError(f"corpus {path}: no records with split {split!r}")
    return records


def corpus_texts(path: Path, split: str) -> list[str]:
    """Texts of the corpus records of one split."""
    return [record["text"] for record in corpus_records(path, split)]


def packed_sequences(texts: list[str], tokenizer, seq_len: int) -> list[dict]:
    """Continued pre-training data: texts joined by EOS, cut into prefix + (seq_len - 1) tokens.

    The tail shorter than a full sequence is dropped, so every sequence has the same length.
    """
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(tokenizer.eos_token_id)
    body = seq_len - 1
    prefix = prefix_token_id(tokenizer)
    sequences = []
    for start in range(0, len(stream) - body + 1, body):
        ids = [prefix, *stream[start:start + body]]
        sequences.append({"input_ids": ids, "labels": list(ids)})
    return sequences


def sft_examples(pairs: list[tuple[str, str]], tokenizer, seq_len: int) -> list[dict]:
    """Supervised examples with the loss on the completion (and a closing EOS) only.

    Prompt and completion are split exactly as the engine splits a log-likelihood request
    (engines/tokens.py): trailing whitespace of the prompt moves to the completion. A too
    long example loses prompt tokens from the left (the prefix token stays), then completion tail.
    """
    prefix = prefix_token_id(tokenizer)
    examples = []
    for prompt_ids, completion_ids in zip(*encode_pairs(tokenizer, pairs)):
        completion_ids = [*completion_ids, tokenizer.eos_token_id]
        completion_ids = completion_ids[:seq_len - 1]
        budget = seq_len - 1 - len(completion_ids)
        prompt_ids = prompt_ids[max(0, len(prompt_ids) - budget):]
        ids = [prefix, *prompt_ids, *completion_ids]
        labels = [IGNORE_INDEX] * (1 + len(prompt_ids)) + completion_ids
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def suite_pairs(suite, split: str, task_names: list[str]) -> list[tuple[str, str]]:
    """(prompt, completion) pairs of every selected task that has `split`, eval templates applied."""
    from tasks.training import training_pairs

    check_split(split, what=f"suite {suite.name}")
    pairs = []
    for task in suite.select(task_names or None):
        if split in task.examples:
            pairs.extend(training_pairs(task, split))
    return pairs


def mixture(sources: dict[str, list[dict]], proportions: dict[str, float], *, seed: int) -> list[dict]:
    """The largest shuffled mix of the sources in exactly these proportions, without repeats."""
    weights = {name: float(share) for name, share in proportions.items() if share > 0}
    missing = [name for name in weights if not sources.get(name)]
    if missing:
        raise DomainbenchError(f"data mixture: no {', '.join(missing)} examples to mix")
    total_share = sum(weights.values())
    size = min(len(sources[name]) / (share / total_share) for name, share in weights.items())
    rng = random.Random(seed)
    mixed = []
    for name, share in weights.items():
        pool = list(sources[name])
        rng.shuffle(pool)
        mixed.extend(pool[:max(1, round(size * share / total_share))])
    rng.shuffle(mixed)
    return mixed


def subsample(examples: list[dict], limit: int, *, seed: int) -> list[dict]:
    """At most `limit` examples (0: all), a seeded sample that keeps the original order."""
    if not limit or len(examples) <= limit:
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


# Characters per token is about 4 for English text with these tokenizers; 8 leaves a wide margin.
_CHARS_PER_TOKEN_MARGIN = 8


def enough_records(records: list[dict], tokens_needed: int, *, seed: int) -> list[dict]:
    """A seeded sample of corpus records whose texts have comfortably more than `tokens_needed` tokens (0: all).

    Tokenizing the whole corpus costs a minute on a small CPU; a budget of 200 sequences
    needs a few pages of it.
    """
    if not tokens_needed:
        return records
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    chosen, chars = [], 0
    for index in order:
        if chars >= tokens_needed * _CHARS_PER_TOKEN_MARGIN:
            break
        chosen.append(index)
        chars += len(records[index]["text"])
    return [records[i] for i in sorted(chosen)]


def examples_fingerprint(examples: list[dict]) -> str:
    """sha256 over the token ids and labels: equal fingerprints mean the same training data."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example["input_ids"], example["labels"]]).encode())
    return digest.hexdigest()


def count_label_tokens(examples: list[dict]) -> int:
    return sum(sum(1 for label in example["labels"][1:] if label != IGNORE_INDEX) for example in examples)


@dataclass
class TrainingData:
    train: list[dict]
    dev: list[dict]
    summary: dict          # per split: examples, labelled tokens, fingerprint; `augment`: the AugmentReport's dict
    augmentation: AugmentReport | None = None
    # What augmenting cost (seconds, tokens): for the manifest's cost block, never its inputs.
    augmentation_cost: dict = field(default_factory=dict)


def training_data(config, tokenizer, suite, *, seed: int, augment: AugmentConfig | None = None,
                  generator: Generator | None = None) -> TrainingData:
    """Train and dev examples for a recipe's `data` section (a DataConfig) from a loaded suite.

    `augment` (the recipe's AugmentConfig) transforms the train split only: dev stays plain, so
    the early-stopping loss of a plain and an augmented variant measure the same thing.
    `generator` writes synthetic-qa's pairs (tuning.augment.synthetic_qa.Generator).
    """
    shares = {name: share for name, share in config.mixture.items() if share > 0}
    augmenting = augment is not None and augment.active
    splits, report, cost = {}, None, {}
    for split, limit in (("train", config.max_train_examples), ("dev", config.max_dev_examples)):
        augmented = augmenting and split == "train"
        records = []
        if "cpt" in shares or (augmented and augment.reads_corpus):
            records = enough_records(corpus_records(suite_corpus(suite), split), limit * config.seq_len, seed=seed)
        texts = [record["text"] for record in records]
        pairs = suite_pairs(suite, split, config.tasks) if "sft" in shares else []
        if augmented:
            from tuning.augment.apply import augment_train_split

            start = time.perf_counter()
            result = augment_train_split(augment, suite, corpus=records, task_names=config.tasks,
                                         generate=generator.metered if generator else None)
            cost = augmentation_cost(augment.method, time.perf_counter() - start, tokenizer,
                                     texts=(texts, result.texts), pairs=result.pairs, generator=generator)
            texts, pairs, report = result.texts, pairs + result.pairs, result.report
        sources = {}
        if "cpt" in shares:
            sources["cpt"] = packed_sequences(texts, tokenizer, config.seq_len)
        if "sft" in shares:
            sources["sft"] = sft_examples(subsample(pairs, limit, seed=seed), tokenizer, config.seq_len)
        examples = subsample(mixture(sources, shares, seed=seed), limit, seed=seed)
        splits[split] = examples
    summary = {split: {"examples": len(examples), "label_tokens": count_label_tokens(examples),
                       "fingerprint": examples_fingerprint(examples)} for split, examples in splits.items()}
    if report is not None:
        summary["augment"] = report.as_dict()
    return TrainingData(train=splits["train"], dev=splits["dev"], summary=summary, augmentation=report,
                        augmentation_cost=cost)


def augmentation_cost(method: str, seconds: float, tokenizer, *, texts: tuple[list[str], list[str]],
                      pairs: list[tuple[str, str]], generator: Generator | None) -> dict:
    """What an augmentation spent and added: its wall time (mining, or generation and filtering), the
    tokens it added to the train pool (before the mixture samples from it) and, for synthetic-qa,
    the generator's time, tokens and device.
    """
    before, after = texts
    added = count_tokens(tokenizer, after) - count_tokens(tokenizer, before) if after is not before else 0
    added += count_tokens(tokenizer, [prompt + completion for prompt, completion in pairs])
    cost = {"method": method, "wall_seconds": seconds, "added_train_tokens": added}
    if generator is not None:
        cost["generator"] = {**generator.usage, "fingerprint": generator.fingerprint, "device": generator.device}
    return cost

