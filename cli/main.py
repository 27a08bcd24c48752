"""The `domainbench` command line: a thin layer over the same calls a notebook user would make."""

from __future__ import annotations

import sys

import click

from harness import __version__
from harness.errors import DomainbenchError
from harness.progress import quiet_libraries


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="domainbench")
@click.option("--debug", is_flag=True, help="Show tracebacks for user errors too.")
@click.option("--verbose", is_flag=True, help="Show other libraries' progress bars, logging and deprecation warnings.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Evaluate base, tuned, adapter, distilled and retrieval-augmented models on domain suites."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if not verbose:
        quiet_libraries()


def _register_commands() -> None:
    # Each area owns one module of commands; importing here keeps `domainbench --help` complete.
    from cli import (
        cache,
        deploy,
        index,
        models,
        report,
        run,
        serve,
        suite,
        suite_build,
        suite_new,
        tune,
    )
    from cli import eval as eval_commands

    for module in (run, models, suite, suite_build, suite_new, eval_commands, report, index, tune, serve, deploy,
                   cache):
        for command in module.COMMANDS:
            cli.add_command(command)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = cli.main(args=args, prog_name="domainbench", standalone_mode=False)
        # Without standalone mode click returns a command's `ctx.exit(n)` code instead of exiting.
        if isinstance(code, int) and code:
            sys.exit(code)
    except DomainbenchError as exc:
        if "--debug" in args:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
