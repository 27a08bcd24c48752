"""The evaluation loop: examples -> prompts -> engine requests -> per-example records -> metrics.

One task at a time: every request of the task goes to the engine in one call (the engine sorts
and batches them), so the scores do not depend on how the loop is chunked.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from harness.errors import DomainbenchError
from harness.progress import status
from harness.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest, is_failed_response
from retrieval.metrics import judged_retrieval_gold
from stats.intervals import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES, Metric
from tasks.prompts import build_prompt, fewshot_exemplars
from tasks.rag_policy import check_rag_ready, exclusion, judges_retrieval
from tasks.records import ExampleRecord
from tasks.registry import task_module
from tasks.retrieval_metrics import retrieval_metrics
from tasks.spec import TaskSpec

DEFAULT_FEWSHOT_SEED = 1234

# Which engine method serves which request type.
_ENGINE_METHODS = {LoglikelihoodRequest: "loglikelihood", RollingRequest: "loglikelihood_rolling",
                   GenerationRequest: "generate"}


@dataclass
class TaskResult:
    task: TaskSpec
    records: list[ExampleRecord]
    metrics: dict[str, Metric]
    settings: dict[str, Any]
    cost: dict[str, float]
    failed: list[str] = field(default_factory=list)  # examples a request failed for: left out of the metrics


def evaluate_task(task: TaskSpec, engine, *, split: str = "test", limit: int | None = None,
                  num_fewshot: int | None = None, seed: int = DEFAULT_FEWSHOT_SEED, rag=None,
                  progress: bool = True, label: str | None = None) -> TaskResult:
    """Evaluate one task on one split through `engine`, optionally retrieval-augmented.

    `rag.augment(query, prompt, exclude=...) -> (prompt, chunks)` adds retrieved context; the
    query is the example's question, document or text, and what it may retrieve is the task's
    `rag` mode (tasks.rag_policy; `off` evaluates without retrieval). `num_fewshot` overrides
    the task's; exemplars come from the train split, seeded per example.
    """
    module = task_module(task.type)
    examples = _examples(task, split, limit, seed)
    k = _fewshot_count(task, module, num_fewshot)
    asked_for_rag = rag is not None
    rag = rag if task.rag != "off" else None
    if rag is not None:
        check_rag_ready(task, examples)
    started = time.perf_counter()
    tokens_before = getattr(engine, "tokens_processed", None)
    prompts, retrieved = [], []
    for example in examples:
        shots = fewshot_exemplars(task, example, k, seed)
        prompt, chunks = build_prompt(task, example, shots, module.target, engine_chat=engine.chat_prompt,
                                      rag=rag, query=module.rag_query(example), exclude=exclusion(task, example))
        prompts.append(prompt)
        retrieved.append(chunks)
    requests = [module.requests_for_prompt(task, ex, prompt) for ex, prompt in zip(examples, prompts)]
    # `label` names what is being evaluated (a run's `configuration / task`), so one line says it all.
    with status(f"{label or task.name}: {len(examples)} {split} examples") if progress else contextlib.nullcontext():
        responses = _per_example(run_requests(engine, [r for rs in requests for r in rs]), requests)
    answered = [not any(is_failed_response(response) for response in answer) for answer in responses]
    failed = [example["id"] for example, ok in zip(examples, answered) if not ok]
    examples, responses, retrieved = ([item for item, ok in zip(column, answered) if ok]
                                      for column in (examples, responses, retrieved))
    records = [module.score(task, example, answer) for example, answer in zip(examples, responses)]
    for record, chunks, example in zip(records, retrieved, examples):
        record.retrieved = chunks
        if rag is not None and judges_retrieval(task):
            record.retrieval_gold = judged_retrieval_gold(example.get("source"), rag.k)
    metrics = {**module.aggregate(task, records), **retrieval_metrics(records)} if records else {}
    seconds = time.perf_counter() - started
    settings = _settings(task, module, engine, split=split, limit=limit, num_fewshot=k, seed=seed, rag=rag)
    if asked_for_rag:
        settings["rag"] = {**(settings["rag"] or {}), "mode": task.rag}
    asked = len(examples) + len(failed)
    cost = {"eval_seconds": seconds, "examples_per_second": asked / seconds if seconds else 0.0,
            "seconds_per_example": seconds / asked}
    if tokens_before is not None and seconds:
        cost["tokens_per_second"] = (engine.tokens_processed - tokens_before) / seconds
    if failed:
        settings["incomplete"] = {"failed_examples": failed, "examples": asked}
    return TaskResult(task, records, metrics, settings, cost, failed)


def build_requests(task: TaskSpec, example: dict, fewshot: list[dict], *, engine_chat=None) -> list:
    """The engine requests of one example with these exemplars (no retrieval), as the loop builds them."""
    module = task_module(task.type)
    prompt, _ = build_prompt(task, example, fewshot, module.target, engine_chat=engine_chat)
    return module.requests_for_prompt(task, example, prompt)


def run_requests(engine, requests: list) -> list:
    """Responses in request order, one engine call per request type."""
    responses: list = [None] * len(requests)
    for request_type, method in _ENGINE_METHODS.items():
        positions = [i for i, request in enumerate(requests) if isinstance(request, request_type)]
        if positions:
            for position, response in zip(positions, getattr(engine, method)([requests[i] for i in positions])):
                responses[position] = response
    return responses


def rescore(task: TaskSpec, records: list[ExampleRecord | dict]) -> tuple[list[ExampleRecord], dict[str, Metric]]:
    """Scores and metrics recomputed from stored examples (a result file's `examples`), no model."""
    module = task_module(task.type)
    rescored = []
    for stored in records:
        record = stored if isinstance(stored, ExampleRecord) else ExampleRecord.from_dict(stored)
        fresh = module.rescore_record(task, record)
        fresh.retrieved, fresh.retrieval_gold = record.retrieved, record.retrieval_gold
        rescored.append(fresh)
    return rescored, {**module.aggregate(task, rescored), **retrieval_metrics(rescored)}


def _examples(task: TaskSpec, split: str, limit: int | None, seed: int) -> list[dict]:
    """The split's examples; with `limit`, a seeded sample of that many, in split order.

    A sample rather than the first N: suites are often ordered by source (the man-pages by
    page), and the first N would all come from a handful of pages. Keyed by example id, so the
    same examples are drawn whatever the split's order, and a larger limit keeps the smaller one's.
    """
    if split not in task.examples:
        raise DomainbenchError(f"task {task.name}: no {split!r} split (has {', '.join(task.examples)})")
    if limit is not None and limit < 1:
        raise DomainbenchError(f"--limit {limit}: expected a positive number of examples")
    examples = task.examples[split]
    if limit is None or limit >= len(examples):
        return list(examples)

    def draw(example: dict) -> str:
        return hashlib.sha256(f"{seed}:{example['id']}".encode()).hexdigest()
    chosen = {example["id"] for example in sorted(examples, key=draw)[:limit]}
    return [example for example in examples if example["id"] in chosen]


def _fewshot_count(task: TaskSpec, module, requested: int | None) -> int:
    if not module.TAKES_FEWSHOT:
        return 0
    k = task.num_fewshot if requested is None else requested
    if k < 0:
        raise DomainbenchError(f"--num-fewshot {k}: expected a non-negative number")
    return k


def _per_example(responses: list, requests: list[list]) -> list[list]:
    grouped, start = [], 0
    for example_requests in requests:
        grouped.append(responses[start:start + len(example_requests)])
        start += len(example_requests)
    return grouped


def _settings(task: TaskSpec, module, engine, *, split, limit, num_fewshot, seed, rag) -> dict[str, Any]:
    return {
        "split": split, "limit": limit, "num_fewshot": num_fewshot, "fewshot_seed": seed,
        "template": task.template, "fewshot_separator": task.fewshot_separator, "chat": task.chat,
        "generation": task.generation, "labels": task.settings()["labels"], "metrics": list(task.metrics),
        "primary_metric": task.primary_metric,
        "batch_tokens": getattr(engine, "max_batch_tokens", None), "max_length": engine.max_length,
        # What the scores were computed on (fakes in tests may not say).
        "device": str(getattr(engine, "device", "")) or None, "dtype": getattr(engine, "dtype", None),
        "rag": rag.settings() if rag is not None else None,
        "bootstrap": {"resamples": DEFAULT_RESAMPLES, "seed": DEFAULT_BOOTSTRAP_SEED, "confidence": 0.95},
        "scoring": module.scoring_settings(task),
    }
