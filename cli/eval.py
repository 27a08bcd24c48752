"""`domainbench eval`: evaluate one model configuration on a suite and write result files."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from cli.options import task_list
from harness.errors import DomainbenchError
from tasks.evaluate import DEFAULT_FEWSHOT_SEED, TaskResult

# The retrieval modes of retrieval/bm25.py, the default first, repeated so `--help` imports no FAISS
# (a test holds them equal).
RETRIEVAL_MODES = ("hybrid", "dense", "lexical")

# `eval`'s exit code when results were written but some examples are missing (their requests failed).
INCOMPLETE_EXIT = 3


@click.command("eval")
@click.option("--model", "model_spec", required=True,
              help="Builtin name, HF model dir, .gguf file, hub id, or an OpenAI-compatible server: "
                   "openai+http://HOST:PORT/v1 (optionally #MODEL; openai-chat+http://… for a server that offers "
                   "only chat completions: generation tasks only).")
@click.option("--suite", "suite_spec", required=True, help="Builtin suite name or a suite directory.")
@click.option("--tasks", "task_names", default=None, help="Comma-separated task names (default: all).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "dev", "test"]))
@click.option("--limit", type=int, default=None, help="Evaluate a seeded sample of N examples of each task.")
@click.option("--num-fewshot", type=int, default=None, help="Override every task's few-shot count.")
@click.option("--seed", type=int, default=DEFAULT_FEWSHOT_SEED, show_default=True, help="Few-shot sampling seed.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if present).")
@click.option("--dtype", default="auto", show_default=True, help="auto, float32, bfloat16, float16.")
@click.option("--batch-tokens", type=int, default=None, help="Engine batch budget in tokens (rows x length).")
@click.option("--output", "output_dir", type=click.Path(path_type=Path), default=None,
              help="Run directory (default: runs/<suite>-<model>); results go to DIR/results/<configuration>/.")
@click.option("--configuration", default=None,
              help="Configuration name for the results (default: base, or adapter with --adapter, +rag with "
                   "--rag-index). A name that means a configuration must be what the flags evaluate; forms "
                   "(base+gguf, …) are built by `domainbench run`; any other name is a free label.")
@click.option("--adapter", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A PEFT adapter dir (LoRA, prefix, …) to put on the model.")
@click.option("--rag-index", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="An index dir from `domainbench index build`: retrieve passages into every prompt.")
@click.option("--rag-k", type=int, default=4, show_default=True, help="Passages retrieved per example.")
@click.option("--retrieval", type=click.Choice(RETRIEVAL_MODES), default=None,
              help="With --rag-index: hybrid (BM25 + dense, as a run's +rag; the default), dense or lexical rankings.")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the model dir.")
@click.option("--tokenizer", "tokenizer_spec", default=None,
              help="With an endpoint: a model spec whose tokenizer the server's model uses (chat template, BOS, "
                   "token counts). Without it prompts go to the server unchanged.")
@click.option("--concurrency", type=int, default=8, show_default=True, help="With an endpoint: requests in flight.")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="With an endpoint: seconds per request attempt (3 retries with back-off).")
def eval_command(model_spec: str, suite_spec: str, task_names: str | None, split: str, limit: int | None,
                 num_fewshot: int | None, seed: int, device: str | None, dtype: str, batch_tokens: int | None,
                 output_dir: Path | None, configuration: str | None, adapter: Path | None, rag_index: Path | None,
                 rag_k: int, retrieval: str, trust_remote_code: bool, tokenizer_spec: str | None, concurrency: int,
                 timeout: float) -> None:
    """Evaluate MODEL on SUITE; write one result file per task and print metrics with 95% intervals."""
    from engines.registry import EngineOptions, engine_kind
    from run.model_eval import EvalSettings, eval_endpoint, eval_local
    from serve.watch import connect_endpoint

    if retrieval is not None and rag_index is None:
        raise DomainbenchError("--retrieval applies with --rag-index only: it says how passages are ranked")
    settings = EvalSettings(split=split, limit=limit, num_fewshot=num_fewshot, seed=seed, output_dir=output_dir,
                            configuration=_configuration_label(configuration, adapter=adapter, rag_index=rag_index),
                            rag_index=rag_index, rag_k=rag_k, rag_mode=retrieval or RETRIEVAL_MODES[0])
    kind = engine_kind(model_spec)
    if not kind.remote:
        if tokenizer_spec:
            raise DomainbenchError("--tokenizer applies to an endpoint only: a local model brings its own")
        outcome = eval_local(model_spec, suite_spec, task_list(task_names), settings=settings, options=EngineOptions(
            device=device, dtype=dtype, trust_remote_code=trust_remote_code, max_batch_tokens=batch_tokens,
            adapter=adapter))
        _show(outcome)
        return
    if adapter or device or batch_tokens:
        raise DomainbenchError("--adapter, --device and --batch-tokens do not apply to an endpoint: "
                               "the server holds the model")
    # Connect before anything else: a server that is down costs one line, not a suite load.
    engine = connect_endpoint(model_spec, tokenizer_spec, trust_remote_code=trust_remote_code,
                              concurrency=concurrency, timeout=timeout, progress=True)
    try:
        outcome = eval_endpoint(engine, suite_spec, task_list(task_names), settings, model_spec=model_spec,
                                tokenizer_spec=tokenizer_spec)
    finally:
        engine.close()
    _show(outcome)
    if outcome.problems:
        raise DomainbenchError(f"endpoint {engine.client.endpoint.url}: {'; '.join(outcome.problems)}")
    if outcome.incomplete:
        left_out = ", ".join(f"{task} ({n} examples left out: their requests failed)"
                             for task, n in outcome.incomplete.items())
        click.echo(f"incomplete: {left_out}; `compare` and the report's ★ leave these results out unless told "
                   "otherwise", err=True)
        sys.exit(INCOMPLETE_EXIT)


def _show(outcome) -> None:
    """The metrics table on standard output (nothing in the other processes of a launcher)."""
    if outcome is not None:
        Console(width=None if sys.stdout.isatty() else 200).print(metrics_table(outcome.results,
                                                                                title=outcome.title))


def metrics_table(results: list[TaskResult], *, title: str) -> Table:
    """One row per (task, metric): value, 95% bootstrap interval and number of examples."""
    table = Table(title=title)
    for column in ("task", "metric", "value", "95% CI", "n"):
        table.add_column(column, justify="right" if column in ("value", "n") else "left")
    for result in results:
        for name, metric in result.metrics.items():
            table.add_row(result.task.name, name, f"{metric.value:.4g}",
                          f"[{metric.ci_low:.4g}, {metric.ci_high:.4g}]", str(metric.n))
    return table


def _configuration_label(name: str | None, *, adapter: Path | None, rag_index: Path | None) -> str:
    """The name results are filed under: what the flags evaluate, or a free label; never a configuration they do not.

    `eval` loads the model it is given, with an adapter and an index if asked. A name such as
    `base+gguf` or `adapter+rag` promises more (a built form, retrieval): filed under it, results
    would stand in reports for something never evaluated.
    """
    from run.spec import parse_configuration

    if name is None:
        return ("adapter" if adapter else "base") + ("+rag" if rag_index else "")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):  # it names a directory under results/
        raise DomainbenchError(f"--configuration {name!r}: use letters, digits and _ . + - (it names a directory)")
    try:
        meant = parse_configuration(name)
    except DomainbenchError:
        return name  # a free name: it only labels the results
    if meant.forms:
        raise DomainbenchError(f"--configuration {name}: eval does not build the {'+'.join(meant.forms)} form; "
                               f"`domainbench run --configurations {name}` builds and evaluates it, or choose a "
                               "name of your own")
    for part, flag, given in (("rag", "--rag-index", rag_index), ("an adapter", "--adapter", adapter)):
        named = meant.rag if part == "rag" else meant.adapter is not None
        if named != (given is not None):
            raise DomainbenchError(f"--configuration {name}: {'names' if named else 'does not name'} {part}, but "
                                   f"{flag} is {'missing' if named else 'given'}; match them, or choose a name of "
                                   "your own")
    return name


COMMANDS = [eval_command]
