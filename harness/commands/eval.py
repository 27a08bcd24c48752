"""`domainbench eval`: evaluate one model configuration on a suite and write result files."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from harness.errors import DomainbenchError
from tasks.evaluate import DEFAULT_FEWSHOT_SEED, TaskResult, evaluate_task
from tasks.suite import load_suite


@click.command("eval")
@click.option("--model", "model_spec", required=True, help="Builtin name, HF model dir, .gguf file or hub id.")
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
@click.option("--configuration", default="base", show_default=True, help="Configuration name for the results.")
@click.option("--adapter", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A PEFT adapter dir (LoRA, prefix, …) to put on the model.")
@click.option("--rag-index", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="An index dir from `domainbench index build`: retrieve passages into every prompt.")
@click.option("--rag-k", type=int, default=4, show_default=True, help="Passages retrieved per example.")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the model dir.")
def eval_command(model_spec: str, suite_spec: str, task_names: str | None, split: str, limit: int | None,
                 num_fewshot: int | None, seed: int, device: str | None, dtype: str, batch_tokens: int | None,
                 output_dir: Path | None, configuration: str, adapter: Path | None, rag_index: Path | None,
                 rag_k: int, trust_remote_code: bool) -> None:
    """Evaluate MODEL on SUITE; write one result file per task and print metrics with 95% intervals."""
    from harness.distributed import (
        init_from_launcher,
        is_main_process,
        launched_world_size,
        local_device,
    )
    from harness.engine import Engine
    from harness.models import load_model
    from harness.preflight import check_device
    from reports.schema import result_file, result_path, write_result

    check_device(device)

    # Under torchrun / accelerate launch every process runs this command: the engine shards the
    # requests across them and gathers the results; the main process writes.
    init_from_launcher()
    if device is None and launched_world_size() > 1:
        device = local_device()
    suite = load_suite(suite_spec)
    tasks = suite.select(_task_list(task_names))
    _check_configuration_name(configuration)
    output_dir = output_dir or Path("runs") / f"{suite.name}-{_slug(model_spec)}"
    loaded = load_model(model_spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    model = _with_adapter(loaded.model, adapter) if adapter else loaded.model
    engine = Engine(model, loaded.tokenizer, max_batch_tokens=batch_tokens)
    rag = _rag(rag_index, loaded.tokenizer, engine, rag_k) if rag_index else None
    results = []
    for task in tasks:
        result = evaluate_task(task, engine, split=split, limit=limit, num_fewshot=num_fewshot, seed=seed, rag=rag)
        results.append(result)
        if not is_main_process():
            continue
        record = result_file(result, run=output_dir.name, configuration=configuration, suite=suite,
                             model_spec=model_spec, model_fingerprint=loaded.fingerprint,
                             adapter=str(adapter) if adapter else None)
        path = write_result(result_path(output_dir, configuration, task.name), record)
        click.echo(f"wrote {path}", err=True)
    if not is_main_process():
        return
    Console(width=None if sys.stdout.isatty() else 200).print(metrics_table(results, title=(
        f"{configuration}: {model_spec} on {suite.name} ({split})")))


def _with_adapter(model, adapter: Path):
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise DomainbenchError(f"--adapter {adapter}: no adapter_config.json (expected a PEFT adapter dir)")
    return PeftModel.from_pretrained(model, str(adapter)).eval()


def _rag(index: Path, tokenizer, engine, k: int):
    from retrieval.rag import RagAugmenter
    from retrieval.retriever import Retriever

    return RagAugmenter(Retriever.load(index), tokenizer, k=k, context_budget_tokens=engine.max_length // 2)


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


def _task_list(task_names: str | None) -> list[str] | None:
    if task_names is None:
        return None
    names = [name.strip() for name in task_names.split(",") if name.strip()]
    if not names:
        raise DomainbenchError("--tasks: expected comma-separated task names")
    return names


def _check_configuration_name(name: str) -> None:
    # The name becomes a directory under results/.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
        raise DomainbenchError(f"--configuration {name!r}: use letters, digits and _ . + - (it names a directory)")


def _slug(model_spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", Path(model_spec).name or model_spec).strip("-") or "model"


COMMANDS = [eval_command]
