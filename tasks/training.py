"""Training pairs: a suite split rendered as the (prompt, completion) text a model is tuned on.

Each task type says how one example becomes a pair (`training_pair`, from its evaluation template),
so a model is trained on exactly the text it is evaluated on; the test split is never a source.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.errors import DomainbenchError
from tasks.registry import task_module
from tasks.spec import TaskSpec


def training_pairs(task: TaskSpec, split: str, *,
                   chat_prompt: Callable[[str], str] | None = None) -> list[tuple[str, str]]:
    """(prompt, completion) pairs of a split, rendered with the evaluation template.

    A chat task's prompt goes through `chat_prompt` (the engine's) when given. Perplexity tasks
    give ("", text): the whole text is the training target.
    """
    if split == "test":
        raise DomainbenchError(f"task {task.name}: training pairs from the test split would leak test labels")
    if split not in task.examples:
        raise DomainbenchError(f"task {task.name}: no {split!r} split (has {', '.join(task.examples)})")
    module = task_module(task.type)
    pairs = []
    for example in task.examples[split]:
        prompt, completion = module.training_pair(task, example)
        if task.chat and chat_prompt is not None and prompt:
            prompt = chat_prompt(prompt)
        pairs.append((prompt, completion))
    return pairs
