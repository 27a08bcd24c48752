"""One entry point: a recipe's augmentation applied to the train split a strategy's data is built from."""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.errors import DomainbenchError
from tuning.augment.overlap import suite_test_overlap
from tuning.augment.perturb import perturbed_pairs
from tuning.augment.reading import reading_comprehension
from tuning.augment.report import AugmentReport
from tuning.augment.settings import PERTURB, READING_COMPREHENSION, SYNTHETIC_QA, AugmentConfig
from tuning.augment.synthetic_qa import Generate, synthetic_qa_pairs


@dataclass
class AugmentedTrainSplit:
    texts: list[str]                 # the corpus texts to pack (rewritten by reading comprehension)
    pairs: list[tuple[str, str]]     # supervised pairs added beside the suite's own
    report: AugmentReport


def augment_train_split(config: AugmentConfig, suite, *, corpus: list[dict], task_names: list[str],
                        generate: Generate | None = None) -> AugmentedTrainSplit:
    """Apply `config` (an active AugmentConfig) to the train split of a loaded Suite.

    `corpus`: the train-split corpus records the recipe reads (id, title, text); `task_names`: the
    recipe's `data.tasks` ([] = all); `generate`: the generator, for synthetic-qa only.
    """
    guard = suite_test_overlap(suite, config.overlap_words)
    report = AugmentReport(config.method, {"seed": config.seed, "overlap_words": config.overlap_words,
                                           **config.settings()})
    texts, pairs = [record["text"] for record in corpus], []
    if config.method == READING_COMPREHENSION:
        texts = reading_comprehension(corpus, config.reading_comprehension, seed=config.seed, guard=guard,
                                      report=report)
    elif config.method == PERTURB:
        pairs = perturbed_pairs(train_views(suite.select(task_names or None)), config.perturb, seed=config.seed,
                                guard=guard, report=report)
    elif config.method == SYNTHETIC_QA:
        if generate is None:
            raise DomainbenchError("augment.method: synthetic-qa needs a generator model, and none was given")
        pairs = synthetic_qa_pairs(corpus, generate, config.synthetic_qa, seed=config.seed, guard=guard, report=report)
    else:
        raise ValueError(f"augment_train_split: {config.method!r} is not an active augmentation")
    return AugmentedTrainSplit(texts=texts, pairs=pairs, report=report)


def train_views(tasks: list) -> list:
    """The TaskSpecs with their train split only: what a transform is handed cannot reach the test split."""
    return [replace(task, examples={"train": task.examples["train"]}) for task in tasks if "train" in task.examples]
