"""User satisfaction in `monitor`: each round's window of ratings from the server's trace store, and its drops.

A round's window is the ratings given since the previous round's window ended (for the first
round: every rating so far), read from the store `serve --traces` writes. Its satisfaction rate is
the share rated "up", with the exact (Clopper–Pearson) 95% interval. It is compared with the
previous window that had ratings and with the first one (the release's first window), each by
Fisher's exact one-sided test of a drop, the two as one family under the gate's correction; a
significant drop fails the round. Windows are kept beside the rounds in the monitor's SQLite file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from serve.monitor import connect
from serve.traces import ratings_between
from stats.intervals import clopper_pearson
from stats.multiplicity import DEFAULT_CORRECTION, adjust
from stats.proportions import share_drop_p_value
from stats.verdicts import ALPHA, significant_in_family

_SCHEMA = """
CREATE TABLE IF NOT EXISTS satisfaction (
    round_id INTEGER NOT NULL, endpoint TEXT NOT NULL, baseline TEXT NOT NULL, configuration TEXT NOT NULL,
    traces TEXT NOT NULL, since REAL NOT NULL, until REAL NOT NULL, satisfied INTEGER NOT NULL,
    rated INTEGER NOT NULL, ci_low REAL, ci_high REAL, p_previous REAL, p_first REAL, dropped INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Window:
    """Ratings given in (since, until]: how many, how many "up"."""

    since: float
    until: float
    satisfied: int
    rated: int

    @property
    def rate(self) -> float | None:
        return self.satisfied / self.rated if self.rated else None

    def describe(self) -> str:
        return (f"{self.rate:.0%} ({self.satisfied} of {self.rated} rated up)" if self.rated
                else "no ratings")


@dataclass
class Satisfaction:
    """One round's window, its interval, and its comparison with the earlier windows it is held to."""

    window: Window
    ci: tuple[float, float] | None
    against: dict[str, Window] = field(default_factory=dict)  # "previous" / "first" window
    p_values: dict[str, float] = field(default_factory=dict)  # one-sided, family-corrected
    drops: list[str] = field(default_factory=list)  # the names in `against` it dropped from, significantly

    def sentence(self) -> str:
        interval = f", 95% interval {self.ci[0]:.0%}–{self.ci[1]:.0%}" if self.ci else ""
        compared = "; ".join(f"{name} window {window.describe()}: p = {self.p_values[name]:.3g}"
                             + (" (significant drop)" if name in self.drops else "")
                             for name, window in self.against.items())
        return (f"satisfaction {self.window.describe()}{interval} since "
                f"{_when(self.window.since)}" + (f"; against the {compared}" if compared else ""))

    def problems(self) -> list[str]:
        return [f"satisfaction dropped: {self.window.describe()} against the {name} window's "
                f"{self.against[name].describe()} (p = {self.p_values[name]:.3g}, Fisher's exact test)"
                for name in self.drops]


def _when(seconds: float) -> str:
    return "the start" if seconds == 0 else time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def round_satisfaction(traces: Path, db_path: Path, *, key: tuple[str, str, str], correction: str = DEFAULT_CORRECTION,
                       alpha: float = ALPHA, until: float | None = None, served: str | None = None) -> Satisfaction:
    """This round's window of the trace store `traces`, held to the earlier windows stored for `key`
    (endpoint, baseline, configuration) in the monitor's file `db_path`. With `served` (the
    configuration fingerprint the endpoint reports) only the ratings of that configuration's answers
    count; earlier windows stay what they were, so a redeploy is held to the model before it."""
    earlier = _windows(db_path, key, traces)
    since = earlier[-1].until if earlier else 0.0
    until = time.time() if until is None else until
    window = Window(since, until, *ratings_between(traces, since, until, served=served))
    rated = [w for w in earlier if w.rated]
    against = {"previous": rated[-1], "first": rated[0]} if rated else {}
    if len(rated) == 1:
        del against["first"]  # the previous window is the first one: one comparison, not two of the same
    satisfaction = Satisfaction(window, clopper_pearson(window.satisfied, window.rated) if window.rated else None)
    if not window.rated or not against:
        return satisfaction
    raw = {name: share_drop_p_value(w.satisfied, w.rated, window.satisfied, window.rated)
           for name, w in against.items()}
    satisfaction.against = against
    satisfaction.p_values = dict(zip(raw, adjust(list(raw.values()), correction)))
    satisfaction.drops = [name for name, significant in zip(raw, significant_in_family(list(raw.values()), correction,
                                                                                         alpha)) if significant]
    return satisfaction


def store_satisfaction(db_path: Path, round_id: int, satisfaction: Satisfaction, *, key: tuple[str, str, str],
                       traces: Path) -> None:
    """Keep the round's window beside its round, for the next round to be held to."""
    window = satisfaction.window
    low, high = satisfaction.ci or (None, None)
    with connect(db_path, _SCHEMA) as db:
        db.execute("INSERT INTO satisfaction (round_id, endpoint, baseline, configuration, traces, since, until, "
                   "satisfied, rated, ci_low, ci_high, p_previous, p_first, dropped) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (round_id, *key, str(Path(traces).resolve()), window.since, window.until, window.satisfied,
                    window.rated, low, high, satisfaction.p_values.get("previous"), satisfaction.p_values.get("first"),
                    int(bool(satisfaction.drops))))


def _windows(db_path: Path, key: tuple[str, str, str], traces: Path) -> list[Window]:
    with connect(db_path, _SCHEMA) as db:
        rows = db.execute("SELECT since, until, satisfied, rated FROM satisfaction WHERE endpoint = ? AND baseline = ? "
                          "AND configuration = ? AND traces = ? ORDER BY rowid",
                          (*key, str(Path(traces).resolve()))).fetchall()
    return [Window(*row) for row in rows]
