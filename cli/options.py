"""Option values several commands parse the same way."""

from __future__ import annotations

import click

from harness.errors import DomainbenchError


def task_list(task_names: str | None) -> list[str] | None:
    """`--tasks a,b` as ["a", "b"]; None (every task) when not given."""
    if task_names is None:
        return None
    names = [name.strip() for name in task_names.split(",") if name.strip()]
    if not names:
        raise DomainbenchError("--tasks: expected comma-separated task names")
    return names


# The gate's two choices, shared by `compare` and `monitor` (stats.verdicts and stats.multiplicity
# hold the same names; they are repeated here so `--help` imports no numpy).
SEMANTICS = ("drop", "non-inferiority")
CORRECTIONS = ("holm", "bh", "none")


def gate_options(command):
    """--semantics and --correction: how a family of paired tests becomes a verdict."""
    command = click.option(
        "--correction", type=click.Choice(CORRECTIONS), default="holm", show_default=True,
        help="Error control across the family of tests: holm (family-wise), bh (false discovery rate), none. "
             "Non-inferiority needs none: every metric must pass.")(command)
    return click.option(
        "--semantics", type=click.Choice(SEMANTICS), default="drop", show_default=True,
        help="drop: fail on evidence of a significant drop beyond --max-drop. non-inferiority: pass only on "
             "evidence that no drop reaches the margin --max-drop METRIC=δ (one-sided 95% bound).")(command)


def gate_settings(semantics: str, correction: str):
    from reports.changes import GateSettings

    return GateSettings(semantics=semantics, correction=correction)


def mlflow_option(command):
    """--mlflow [URI]: log what the command found to MLflow; a missing MLflow or a bad URI stops it before any work."""
    def checked(ctx, param, value):
        if value is None:
            return None
        from reports.tracking import tracking_uri

        return tracking_uri(value)

    return click.option(
        "--mlflow", "mlflow_uri", is_flag=False, flag_value="", default=None, metavar="[URI]", callback=checked,
        help="Log to MLflow (needs `pip install 'domainbench[mlflow]'`): the tracking URI, else $MLFLOW_TRACKING_URI, "
             "else sqlite:///mlflow.db here (open it with `mlflow ui`). The value is optional: write --mlflow=URI "
             "before positional arguments.")(command)
