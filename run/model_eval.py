"""One model on a suite, without a run spec: the work of `domainbench eval`.

A model this process runs (an HF model dir or builtin name, a GGUF file; an adapter and an index
if asked) or an OpenAI-compatible endpoint, each task evaluated and filed as a result file under
`<output>/results/<configuration>/`. The command (cli/eval.py) parses the flags and prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import click

from engines.registry import EngineOptions
from harness.errors import DomainbenchError
from reports.formatting import slug
from reports.schema import ResultFile, result_file
from reports.store import ResultStore
from tasks.evaluate import TaskResult, evaluate_task
from tasks.suite import Suite, load_suite


@dataclass(frozen=True)
class EvalSettings:
    """What every task of one `eval` is evaluated with, and where its results are filed."""

    split: str = "test"
    limit: int | None = None
    num_fewshot: int | None = None
    seed: int = 0
    configuration: str = "base"
    output_dir: Path | None = None
    rag_index: Path | None = None
    rag_k: int = 4
    rag_mode: str = "hybrid"


@dataclass
class EvalOutcome:
    """The results written, the title they are shown under, and the tasks that could not be scored."""

    results: list[TaskResult]
    title: str
    problems: list[str] = field(default_factory=list)   # one line each; the command fails with them

    @property
    def incomplete(self) -> dict[str, int]:
        """task -> examples left out of its metrics because their requests failed."""
        return {result.task.name: len(result.failed) for result in self.results if result.failed}


def eval_local(model_spec: str, suite_spec: str, task_names: list[str] | None, options: EngineOptions,
               settings: EvalSettings) -> EvalOutcome | None:
    """Evaluate a model this process runs; every process of a launcher takes part, the main one writes.

    None in the other processes of a launcher (they have nothing to show).
    """
    from engines.distributed import (
        init_from_launcher,
        is_main_process,
        launched_world_size,
        leave_launcher_group,
        local_device,
    )
    from run.configuration import configuration_from_spec
    from run.preflight import check_device

    check_device(options.device)
    # Under torchrun / accelerate launch every process runs this command: the engine shards the
    # requests across them and gathers the results; the main process writes.
    init_from_launcher()
    if options.device is None and launched_world_size() > 1:
        options = replace(options, device=local_device())
    suite = load_suite(suite_spec)
    tasks = suite.select(task_names)
    store = ResultStore(settings.output_dir or default_output(suite, Path(model_spec).name or model_spec))
    opened = configuration_from_spec(model_spec, options, rag_index=settings.rag_index, rag_k=settings.rag_k,
                                     rag_mode=settings.rag_mode)
    results, main = [], is_main_process()
    try:
        for task in tasks:
            result = _evaluate(task, opened.engine, settings, rag=opened.augmenter)
            results.append(result)
            if main:
                _save(store, _record(result, store, suite, settings, model_spec, opened.about["fingerprint"],
                                     adapter=str(options.adapter) if options.adapter else None))
    finally:
        opened.close()
    leave_launcher_group()
    if not main:
        return None
    return EvalOutcome(results, f"{settings.configuration}: {model_spec} on {suite.name} ({settings.split})")


def eval_endpoint(engine, suite_spec: str, task_names: list[str] | None, settings: EvalSettings, *,
                  model_spec: str, tokenizer_spec: str | None = None) -> EvalOutcome:
    """Evaluate an OpenAI-compatible server: failed requests are recorded, not fatal.

    Examples whose log-likelihood requests failed are left out of the metrics and listed; failed
    generations score as wrong answers. A task the endpoint cannot score (no prompt log-probs) is
    reported and the others still run; the outcome's problems name them. `tokenizer_spec` is recorded
    beside the results (the engine carries its tokenizer already: serve.watch.connect_endpoint).
    """
    from engines.openai_api import NotScorable
    from run.configuration import augmenter_for_index
    from run.endpoint_results import with_request_errors

    suite = load_suite(suite_spec)
    tasks = suite.select(task_names)
    if settings.rag_index and engine.tokenizer is None:
        raise DomainbenchError("--rag-index with an endpoint needs --tokenizer (passages are budgeted in tokens)")
    rag = (augmenter_for_index(settings.rag_index, engine, settings.rag_k, mode=settings.rag_mode)
           if settings.rag_index else None)
    client = engine.client
    host = urlsplit(client.endpoint.url).netloc.replace(":", "-")
    store = ResultStore(settings.output_dir or default_output(suite, host, fallback="endpoint"))
    results, not_scorable, unanswered = [], [], []
    for task in tasks:
        before = (len(client.errors), client.requests_made, len(client.latencies))
        try:
            result = _evaluate(task, engine, settings, rag=rag)
        except NotScorable as exc:
            click.echo(f"{task.name}: not scorable: {exc}", err=True)
            not_scorable.append(task.name)
            continue
        result = with_request_errors(result, client, *before)
        if result is None:
            unanswered.append(task.name)
            continue
        results.append(result)
        record = _record(result, store, suite, settings, model_spec, client.fingerprint)
        record.model.update(endpoint=client.endpoint.url, served_model=client.model_id, tokenizer=tokenizer_spec)
        _save(store, record)
    if client.errors:
        kinds = ", ".join(f"{kind} {n}" for kind, n in client.error_counts().items())
        click.echo(f"{len(client.errors)} of {client.requests_made} requests to {client.endpoint.url} failed "
                   f"({kinds}); recorded in the result files", err=True)
    problems = ([f"not scorable on this endpoint (no usable prompt log-probabilities): {', '.join(not_scorable)}"]
                if not_scorable else [])
    problems += [f"every request failed: {', '.join(unanswered)}"] if unanswered else []
    title = f"{settings.configuration}: {client.endpoint.url} ({client.model_id}) on {suite.name} ({settings.split})"
    return EvalOutcome(results, title, problems)


def default_output(suite: Suite, model_name: str, *, fallback: str = "model") -> Path:
    """runs/<suite>-<model or host>: where `eval` files results when no --output is given."""
    return Path("runs") / f"{suite.name}-{slug(model_name, fallback=fallback)}"


def _evaluate(task, engine, settings: EvalSettings, *, rag) -> TaskResult:
    return evaluate_task(task, engine, split=settings.split, limit=settings.limit, num_fewshot=settings.num_fewshot,
                         seed=settings.seed, rag=rag)


def _record(result: TaskResult, store: ResultStore, suite: Suite, settings: EvalSettings, model_spec: str,
            fingerprint: str | None, *, adapter: str | None = None) -> ResultFile:
    return result_file(result, run=store.run_dir.name, configuration=settings.configuration, suite=suite,
                       model_spec=model_spec, model_fingerprint=fingerprint, adapter=adapter)


def _save(store: ResultStore, record: ResultFile) -> None:
    click.echo(f"wrote {store.save(record)}", err=True)
