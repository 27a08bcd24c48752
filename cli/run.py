"""`domainbench run`: the comparison run, the product's main job."""

from __future__ import annotations

from pathlib import Path

import click

from cli.options import mlflow_option
from run.spec import (
    DEFAULT_CONFIGURATIONS,
    FULL_PROFILE_CONFIGURATIONS,
    PROFILES,
    load_spec,
)


@click.command("run")
@click.argument("spec_file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", default=None, help="Run name: results go to OUTPUT/NAME/ (default: demo).")
@click.option("--suite", default=None, help="Builtin suite name or suite directory (default: manpages).")
@click.option("--model", default=None, help="Model spec (default: smollm2-135m-instruct).")
@click.option("--configurations", default=None,
              help=f"Comma-separated, e.g. base,rag,adapter+rag (default: {','.join(DEFAULT_CONFIGURATIONS)}; "
                   f"the full profile adds {','.join(FULL_PROFILE_CONFIGURATIONS)}).")
@click.option("--profile", type=click.Choice(PROFILES), default=None,
              help="quick (CPU smoke budgets), full (GPU budgets), auto (by device; default).")
@click.option("--tasks", default=None, help="Comma-separated task names (default: all).")
@click.option("--limit", type=int, default=None, help="Examples per task (default: the profile's).")
@click.option("--num-fewshot", type=int, default=None, help="Override every task's few-shot count.")
@click.option("--seed", type=int, default=None, help="Few-shot and subsampling seed (default: 1234).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if present).")
@click.option("--dtype", default=None, help="auto, float32, bfloat16, float16.")
@click.option("--output", default=None, help="Parent directory of run dirs (default: runs).")
@click.option("--trust-remote-code", is_flag=True, default=None, help="Allow model code from the model dir.")
@mlflow_option
def run_command(spec_file: Path | None, name, suite, model, configurations, profile, tasks, limit, num_fewshot,
                seed, device, dtype, output, trust_remote_code, mlflow_uri) -> None:
    """Train, index and evaluate every configuration on every task; write the report.

    SPEC_FILE is an optional YAML run spec; flags override it. Interrupted and run again, the run
    resumes: results whose inputs did not change are kept.
    """
    from run.runner import run

    overrides = {"name": name, "suite": suite, "model": model, "profile": profile, "limit": limit,
                 "num_fewshot": num_fewshot, "seed": seed, "device": device, "dtype": dtype, "output": output,
                 "trust_remote_code": trust_remote_code,
                 "configurations": _names(configurations), "tasks": _names(tasks)}
    run_dir = run(load_spec(spec_file, overrides))
    if mlflow_uri is not None:
        from reports.tracking import log_run

        log_run(run_dir, mlflow_uri)
    click.echo(f"report: {run_dir / 'report.html'}")


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


COMMANDS = [run_command]
