"""Prompt assembly shared by the task types: template rendering, few-shot exemplars, chat and RAG.

A prompt is `k` exemplars (template + gold target) then the query example's template, joined by
the task's few-shot separator. The same rendering produces the tuning engineer's training pairs
(tasks/training.py), so a model is trained on exactly the text it is evaluated on.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from harness.errors import DomainbenchError
from tasks.spec import TaskSpec

FEWSHOT_SPLIT = "train"


def template_fields(template: str) -> set[str]:
    """Top-level example fields a `str.format` template reads (`{answers[0]}` reads `answers`)."""
    fields = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            fields.add(name.split(".")[0].split("[")[0])
    return fields


def check_template_syntax(template: str) -> None:
    """Raise ValueError/IndexError/KeyError/AttributeError when `template` is not a valid str.format template."""
    template_fields(template)
    template.format_map(_AnyFields())


class _AnyFields(dict):
    """Answers any field lookup, to check a template's syntax without an example."""

    def __missing__(self, key):
        return _AnyValue()


class _AnyValue:
    def __getitem__(self, key):
        return self

    def __getattr__(self, name):
        return self

    def __format__(self, spec):
        return ""


def render(template: str, example: dict) -> str:
    return template.format(**example)


def fewshot_exemplars(task: TaskSpec, example: dict, k: int, seed: int) -> list[dict]:
    """`k` exemplars from the train split, never the test split, never the example itself.

    The generator is seeded per example (seed, task, id), so an example's exemplars do not
    change with --limit, with the order of evaluation, or with the other examples.
    """
    if k == 0:
        return []
    pool = [shot for shot in task.examples.get(FEWSHOT_SPLIT, []) if shot["id"] != example["id"]]
    if len(pool) < k:
        raise DomainbenchError(f"task {task.name}: {k} few-shot exemplars requested but the "
                               f"{FEWSHOT_SPLIT} split has only {len(pool)} to draw from")
    return random.Random(f"{seed}:{task.name}:{example['id']}").sample(pool, k)


def build_prompt(task: TaskSpec, example: dict, fewshot: list[dict], target: Callable[[TaskSpec, dict], str],
                 *, engine_chat: Callable[[str], str] | None = None, rag=None,
                 query: str | None = None, exclude=None) -> tuple[str, list[dict] | None]:
    """The final prompt text for `example`, and the chunks retrieval added (None without rag).

    Retrieval augments the plain prompt before the chat template wraps it, so the retrieved
    context sits inside the user turn; `exclude` (tasks.rag_policy.exclusion) is what it may not show.
    """
    shots = [render(task.template, shot) + target(task, shot) for shot in fewshot]
    prompt = task.fewshot_separator.join([*shots, render(task.template, example)])
    retrieved = None
    if rag is not None and query is not None:
        prompt, retrieved = rag.augment(query, prompt, exclude=exclude)
    if task.chat:
        if engine_chat is None:
            raise ValueError(f"task {task.name} is a chat task: pass engine_chat (engine.chat_prompt)")
        prompt = engine_chat(prompt)
    return prompt, retrieved

