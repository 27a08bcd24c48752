"""Load tests attached to a run: what serving each configuration gives its users under concurrency.

`domainbench loadtest ENDPOINT --run RUN --configuration C` writes its record to
`RUN/serving/<configuration>.json` (`load_test_path`); the report shows every level of it beside
quality ("Serving under load") and the leaderboard shows the busiest level's p95 latency and
output tokens/s. serve/loadtest.py measures the levels (as `LoadLevel`s) and writes the record; this module reads it, checks the
fields the reports use (naming the file and field when one is wrong), and turns it into plain-text
rows that each renderer escapes its own way.
"""

from __future__ import annotations

import json
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields
from pathlib import Path

from harness.errors import DomainbenchError
from reports.formatting import MISSING, format_seconds, slug

SERVING_DIR = "serving"


@dataclass
class LoadLevel:
    """One level of a load test (seconds; None where no request was answered).

    A closed-loop level keeps `concurrency` requests in flight. An open-loop level sends requests at
    `rate` per second (`arrivals`: "poisson" or "constant") whatever the server's pace; its
    `concurrency` is the most that were in flight at once.
    """

    concurrency: int
    requests: int
    errors: int
    error_rate: float
    requests_per_second: float
    output_tokens_per_second: float
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None
    latency_p99_seconds: float | None
    ttft_p50_seconds: float | None
    ttft_p95_seconds: float | None
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    seconds: float | None = None          # the level's wall time
    rate: float | None = None             # requests/s offered (open loop); None for a closed loop
    arrivals: str | None = None           # with a rate: "poisson" or "constant"

    @property
    def load(self) -> float:
        """How hard the level pushes: its rate (open loop) or its concurrency (closed loop)."""
        return self.rate if self.rate is not None else self.concurrency

    @property
    def label(self) -> str:
        """The level as the tables name it: "8 in flight", or "2 req/s poisson (peak 5 in flight)"."""
        if self.rate is None:
            return f"{self.concurrency} in flight"
        return f"{self.rate:g} req/s {self.arrivals or ''} (peak {self.concurrency} in flight)".replace("  ", " ")


@dataclass
class LoadTest:
    """A load test of the endpoint that served one configuration of a run."""

    configuration: str
    endpoint: str
    engine: str | None
    served_model: str | None
    suite: str | None
    max_tokens: int | None
    created: str | None
    levels: list[LoadLevel]

    @property
    def busiest(self) -> LoadLevel:
        """The level that pushes hardest (highest rate or concurrency): what the leaderboard shows."""
        return max(self.levels, key=lambda level: level.load)


def load_test_path(run_dir: Path, configuration: str) -> Path:
    """Where a run keeps the load test of one configuration."""
    return Path(run_dir) / SERVING_DIR / f"{slug(configuration)}.json"


def load_run_load_tests(run_dir: Path) -> dict[str, LoadTest]:
    """The run's load tests by configuration, in file-name order; {} when none is attached."""
    folder = Path(run_dir) / SERVING_DIR
    tests = [read_load_test(path) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return {test.configuration: test for test in tests}


def read_load_test(path: Path) -> LoadTest:
    """One attached load-test record, checked."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DomainbenchError(f"{path}: not a readable JSON load-test record ({exc})") from None
    if not isinstance(record, dict) or record.get("kind") != "loadtest":
        raise DomainbenchError(f"{path}: kind: expected \"loadtest\"")
    for key in ("configuration", "endpoint"):
        if not isinstance(record.get(key), str):
            raise DomainbenchError(f"{path}: {key}: expected a string")
    levels = record.get("levels")
    if not isinstance(levels, list) or not levels:
        raise DomainbenchError(f"{path}: levels: expected a non-empty list")
    return LoadTest(configuration=record["configuration"], endpoint=record["endpoint"], engine=record.get("engine"),
                    served_model=record.get("served_model"), suite=record.get("suite"),
                    max_tokens=record.get("max_tokens"), created=record.get("created"),
                    levels=[_level(path, i, level) for i, level in enumerate(levels)])


def _level(path: Path, index: int, level: object) -> LoadLevel:
    required = [f.name for f in fields(LoadLevel) if f.default is NO_DEFAULT and f.default_factory is NO_DEFAULT]
    missing = [name for name in required if not isinstance(level, dict) or name not in level]
    if missing:
        raise DomainbenchError(f"{path}: levels[{index}]: missing {', '.join(missing)}")
    return LoadLevel(**{f.name: level[f.name] for f in fields(LoadLevel) if f.name in level})


# ----- plain-text rows every renderer shows (Markdown and HTML escape them their own way) ------------

LOAD_HEADER = ("configuration", "engine", "endpoint", "load", "requests", "latency p50", "p95", "p99",
               "TTFT p50", "TTFT p95", "output tok/s", "req/s", "error rate")
LEADERBOARD_LOAD_HEADER = ("p95 latency under load", "output tok/s under load")


def load_rows(test: LoadTest) -> list[list[str]]:
    """One row per level, lightest first; configuration, engine and endpoint on the first only."""
    rows = []
    for position, level in enumerate(sorted(test.levels, key=lambda level: level.load)):
        who = [test.configuration, test.engine or MISSING, test.endpoint] if position == 0 else ["", "", ""]
        rows.append([*who, level.label, str(level.requests),
                     *(format_seconds(seconds) for seconds in (
                         level.latency_p50_seconds, level.latency_p95_seconds, level.latency_p99_seconds,
                         level.ttft_p50_seconds, level.ttft_p95_seconds)),
                     f"{level.output_tokens_per_second:,.1f}", f"{level.requests_per_second:,.2f}",
                     f"{level.error_rate:.1%}"])
    return rows


def load_note(test: LoadTest) -> str:
    """What one load test replayed, against what, and when."""
    prompts = f"{test.suite} prompts" if test.suite else "suite prompts"
    tokens = f", at most {test.max_tokens} tokens each" if test.max_tokens else ""
    served = f" (served model {test.served_model})" if test.served_model else ""
    when = f", measured {test.created}" if test.created else ""
    return f"{test.configuration}: {prompts}{tokens}{served}{when}."


def leaderboard_load_cells(test: LoadTest | None) -> list[tuple[str, float | None]]:
    """(text, sort key) of the busiest level's p95 latency and output tokens/s; "—" without a load test.

    Sort keys run best first when sorted descending: latency is negated.
    """
    if test is None:
        return [(MISSING, None), (MISSING, None)]
    level = test.busiest
    p95 = level.latency_p95_seconds
    return [(MISSING, None) if p95 is None else (f"{format_seconds(p95)} ({level.label})", -p95),
            (f"{level.output_tokens_per_second:,.1f} tok/s ({level.label})",
             level.output_tokens_per_second)]
