"""`domainbench tune full|lora|prefix|ia3|prompt|distill`: train an artifact from a recipe."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from harness.atomic import check_writable
from harness.manifest import check_replaceable
from tuning.recipe import PROFILES


@click.group("tune")
def tune_group() -> None:
    """Tune a model on a suite's training data; each strategy writes an artifact with a manifest."""


def _strategy_command(strategy: str, summary: str):
    @tune_group.command(strategy, help=summary)
    @click.option("--model", "model_spec", required=True, help="Builtin name, HF model dir, .gguf file or hub id.")
    @click.option("--suite", "suite_spec", required=True, help="Builtin suite name or a suite directory.")
    @click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False), default=None,
                  help=f"Recipe YAML overriding tuning/recipes/{strategy}.yaml.")
    @click.option("--profile", type=click.Choice(PROFILES), default=None,
                  help="quick: a few minutes on a 2-core CPU (smoke budget); full: a GPU budget.")
    @click.option("--output", type=click.Path(path_type=Path, file_okay=False), default=None,
                  help="Artifact dir (default: cache/artifacts/<strategy>-<input hash>).")
    @click.option("--resume", is_flag=True, help="Continue from the last checkpoint of an interrupted run.")
    @click.option("--force", is_flag=True, help="Replace OUTPUT even when it holds something other than an artifact.")
    def command(model_spec: str, suite_spec: str, config: Path | None, profile: str | None, output: Path | None,
                resume: bool, force: bool) -> None:
        if output is not None:
            check_replaceable(output, force=force, option="--output")
            check_writable(output.parent, label=f"--output {output}")
        artifact = run_strategy(strategy, model_spec, suite_spec, config=config, profile=profile, output=output,
                                resume=resume)
        _print_summary(artifact)

    return command


def run_strategy(strategy: str, model_spec: str, suite_spec: str, *, config: Path | None = None,
                 profile: str | None = None, output: Path | None = None, resume: bool = False) -> Path:
    """Load the suite and run the strategy; returns the artifact dir."""
    from tasks.suite import load_suite
    from tuning.strategies import tune

    return tune(strategy, model_spec, load_suite(suite_spec), config=config, profile=profile, output=output,
                resume=resume)


def _print_summary(artifact: Path) -> None:
    from harness.manifest import MANIFEST_FILE, read_manifest

    if not (Path(artifact) / MANIFEST_FILE).is_file():
        return  # a non-main process under torchrun: the main one prints
    manifest = read_manifest(artifact)
    cost, quality = manifest["cost"], manifest["quality"]
    table = Table(title=f"{manifest['strategy']} ({manifest['recipe']['profile'] or 'default'} profile): {artifact}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [("steps", str(quality["steps"]) + (" (early stop)" if quality["stopped_early"] else "")),
            ("dev loss before", _number(quality["dev_loss_before"])),
            ("dev loss after", _number(quality["dev_loss_after"])),
            ("wall time", f"{cost['wall_seconds']:.1f} s"),
            ("tokens seen", f"{cost['tokens_seen']:,}"),
            ("tokens/s", f"{cost['tokens_per_second']:,.0f}"),
            (f"peak memory ({cost['peak_memory_kind']})", f"{cost['peak_memory_bytes'] / 2**20:,.0f} MiB"),
            ("trainable / total params", f"{cost['trainable_parameters']:,} / {cost['total_parameters']:,}"),
            ("artifact size", f"{cost['artifact_bytes'] / 2**20:,.1f} MiB")]
    for name, value in rows:
        table.add_row(name, value)
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


_STRATEGIES = {
    "full": "Fine-tune all weights (optionally freezing embeddings or the bottom layers).",
    "lora": "Train a LoRA adapter through PEFT (saved as a PEFT adapter dir).",
    "prefix": "Train a prefix-tuning adapter through PEFT (saved as a PEFT adapter dir).",
    "ia3": "Train an IA3 adapter through PEFT (saved as a PEFT adapter dir).",
    "prompt": "Train a prompt-tuning adapter through PEFT (saved as a PEFT adapter dir).",
    "distill": "Distil a student with every other layer of the teacher (default: the finetuned artifact).",
}
for _name, _summary in _STRATEGIES.items():
    _strategy_command(_name, _summary)

COMMANDS = [tune_group]
