"""EDA perturbations (Wei & Zou 2019): random swap, deletion and insertion on training inputs.

Each copy of a train example applies one operation, drawn from the recipe's list, to every input
field its task's template reads, changing about `rate` of the field's words (EDA's alpha: at
least one change). Insertion takes its words from the same text, so no lexical resource is
needed (EDA's synonym operations need WordNet, whose data nltk downloads: left out). The
completion is never perturbed: a copy whose completion would change (a template field that is
also the target, as NER's spans) is dropped, as is one the operation left unchanged or one whose
original or copy overlaps the test split. Originals stay in the data; copies are added beside
them. A perturbed field's whitespace is folded to single spaces.
"""

from __future__ import annotations

import random

from tasks.prompts import template_fields
from tasks.registry import task_module
from tuning.augment.overlap import TestOverlap
from tuning.augment.report import AugmentReport
from tuning.augment.settings import PerturbSettings


def perturbed_words(words: list[str], operation: str, rate: float, rng: random.Random) -> list[str]:
    """`words` with round(rate * len) (at least one) swaps, deletions or insertions."""
    changes = max(1, round(rate * len(words)))
    words = list(words)
    if operation == "swap" and len(words) >= 2:
        for _ in range(changes):
            i, j = rng.sample(range(len(words)), 2)
            words[i], words[j] = words[j], words[i]
    elif operation == "delete" and len(words) >= 2:
        # EDA deletes each word with probability p; here at least one goes and at least one stays.
        kept = [word for word in words if rng.random() >= rate]
        if len(kept) == len(words):
            del kept[rng.randrange(len(kept))]
        words = kept or [rng.choice(words)]
    elif operation == "insert" and words:
        for _ in range(changes):
            words.insert(rng.randrange(len(words) + 1), rng.choice(words))
    return words


def perturbed_pairs(tasks: list, settings: PerturbSettings, *, seed: int, guard: TestOverlap,
                    report: AugmentReport) -> list[tuple[str, str]]:
    """`copies` perturbed (prompt, completion) pairs of each train example of `tasks` (TaskSpecs)."""
    pairs = []
    for task in tasks:
        module = task_module(task.type)
        inputs = template_fields(task.template)
        for example in task.examples.get("train", []):
            report.read += 1
            prompt, completion = module.training_pair(task, example)
            if not prompt:
                report.drop("no input to perturb (the whole example is the target)", completion)
                continue
            rng = random.Random(f"{seed}\n{task.name}\n{example['id']}")
            for _ in range(settings.copies):
                operation = rng.choice(settings.operations)
                changed = {name: " ".join(perturbed_words(example[name].split(), operation, settings.rate, rng))
                           for name in sorted(inputs) if isinstance(example.get(name), str)}
                new_prompt, new_completion = module.training_pair(task, {**example, **changed})
                if new_completion != completion:
                    report.drop("the perturbed input is part of the target", new_prompt)
                elif new_prompt == prompt:
                    report.drop("unchanged by the operation (too few words)", new_prompt)
                # The original too: a copy of an example that overlaps the test split would amplify the leak.
                elif (test_example := guard.overlapping(f"{prompt}\n{new_prompt}")) is not None:
                    report.drop("overlaps the test split", f"{new_prompt}\n(test example {test_example})")
                else:
                    report.keep(operation, new_prompt)
                    pairs.append((new_prompt, completion))
    return pairs
