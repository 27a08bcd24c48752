"""`domainbench suite build` and `domainbench suite check-leakage`, attached to the `suite` group.

Importing this module attaches them; COMMANDS is empty because `suite_group` itself is
registered by cli.suite.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.suite import suite_group
from harness.errors import DomainbenchError

BUILDERS = ("manpages",)


@suite_group.command("build")
@click.argument("name", type=click.Choice(BUILDERS))
@click.option("--source", type=click.Path(path_type=Path, file_okay=False), default=Path("/usr/share/man"),
              show_default=True, help="Root of the man page tree (holds man2, man3, …).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write the data here instead of the builtin suite directory.")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True, help="Processes rendering pages.")
def build(name: str, source: Path, out_dir: Path | None, workers: int) -> None:
    """Build the builtin suite NAME's data files from their source (byte-reproducible)."""
    from tasks.manpages.build import SUITE_DIR, build_suite

    result = build_suite(source, out_dir or SUITE_DIR, workers=workers)
    click.echo(f"{result.pages} pages in {result.seconds:.1f} s; "
               f"{sum(result.bytes_written.values()) / 1e6:.2f} MB written to {out_dir or SUITE_DIR}")
    for task, counts in result.counts.items():
        split_counts = "  ".join(f"{split} {count}" for split, count in counts.items())
        dropped = result.dropped_leaks.get(task)
        click.echo(f"  {task:<11} {split_counts}" + (f"  (test examples dropped as leaks: {dropped})" if dropped else ""))


LEAKS_SHOWN = 20


@suite_group.command("check-leakage")
@click.argument("suite")
@click.option("--all", "show_all", is_flag=True, help=f"List every leak (default: the first {LEAKS_SHOWN}).")
def check_leakage(suite: str, show_all: bool) -> None:
    """Fail when a test answer of SUITE appears in text the suite offers for training, or an example names a
    source document the corpus does not hold."""
    from tasks.leakage import check_leakage as find_leaks

    leaks = find_leaks(suite)
    if leaks:
        shown = leaks if show_all else leaks[:LEAKS_SHOWN]
        more = f"\n… and {len(leaks) - len(shown)} more (--all lists every one)" if len(shown) < len(leaks) else ""
        raise DomainbenchError(f"{len(leaks)} leak(s) in suite {suite}:\n" + "\n".join(map(str, shown)) + more)
    click.echo(f"{suite}: no leakage (test answers checked against train, dev, the corpus' train view, and what retrieval may show each task)")


COMMANDS: list = []
