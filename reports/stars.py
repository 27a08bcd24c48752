"""The ★: which configuration of a task is significantly better than every other on a metric.

All the claims of one report are judged as one family: each claim "the best beats every other" is
an intersection–union test (`stats.verdicts.beats_every_other`), and Holm's correction runs over
all of them (`stats.verdicts.significant_in_family`). Not-converged configurations are never the
best but are among the "others"; a result with failed requests is never starred.
"""

from __future__ import annotations

from reports.changes import incompleteness
from reports.schema import ResultFile
from reports.tables import TaskTable
from stats.multiplicity import DEFAULT_CORRECTION
from stats.verdicts import beats_every_other, significant_in_family
from tasks.pairing import higher_is_better, paired_differences


def mark_best(tables: list[TaskTable], by_task: dict[str, dict[str, ResultFile]], ranked: list[str], *,
              n_resamples: int, seed: int, correction: str = DEFAULT_CORRECTION) -> int:
    """Star each (task, metric)'s best configuration where it beats every other, as one corrected family.

    Each claim "best beats every other" is an intersection–union test (`stats.verdicts.beats_every_other`);
    Holm's correction then runs over all claims. A result with failed requests is incomplete and
    never starred. Returns the family's size.
    """
    claims = [(table, metric, best, p) for table in tables for metric in table.metrics
              if (found := best_claim(table, by_task[table.task], metric, _complete(by_task[table.task], ranked),
                                      n_resamples=n_resamples, seed=seed)) for best, p in [found]]
    for (table, metric, best, _), starred in zip(claims, significant_in_family([p for *_, p in claims], correction)):
        table.cells[best][metric].best = starred
    return len(claims)


def _complete(by_config: dict[str, ResultFile], ranked: list[str]) -> list[str]:
    """The ranked configurations whose result on this task has every example scored."""
    return [c for c in ranked if c in by_config and not incompleteness(by_config[c])]


def best_configuration(table: TaskTable, metric: str, ranked: list[str]) -> str | None:
    """The ranked configuration with the best figure on `metric`; None if no ranked one reports it."""
    reported = [c for c in table.configurations if metric in table.cells[c] and c in ranked]
    sign = 1 if higher_is_better(metric) else -1
    return max(reported, key=lambda c: sign * table.cells[c][metric].value, default=None)


def best_claim(table: TaskTable, by_config: dict[str, ResultFile], metric: str, ranked: list[str], *,
               n_resamples: int, seed: int) -> tuple[str, float] | None:
    """(the best ranked configuration, the p-value of "it beats every other"), None when there is no claim.

    "Every other" includes the unranked (not converged) ones: a mark means no configuration came close.
    The p-value is 1 when some other configuration is as good or better, or cannot be paired.
    """
    best = best_configuration(table, metric, ranked)
    others = [c for c in table.configurations if c != best and metric in table.cells[c]]
    if best is None or not others:
        return None
    pairs = [paired_differences(by_config[other], by_config[best], [metric], n_resamples=n_resamples,
                                seed=seed).get(metric) for other in others]
    if any(pair is None for pair in pairs):
        return best, 1.0
    return best, beats_every_other([pair.difference for pair in pairs], higher_is_better(metric))
