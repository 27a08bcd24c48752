"""Numbers as every report shows them (Markdown, HTML, compare, leaderboard) — one place, one look."""

from __future__ import annotations

import re

from reports.costs import ConfigurationCost

MISSING = "—"


def format_value(value: float | None) -> str:
    if value is None:
        return MISSING
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_interval(low: float, high: float) -> str:
    return f"[{format_value(low)}, {format_value(high)}]"


def format_count(value: float | None) -> str:
    """Parameter and token counts as 1.2M / 35K."""
    if value is None:
        return MISSING
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return f"{value / threshold:.1f}{suffix}"
    return f"{value:.0f}"


def format_seconds(value: float | None) -> str:
    if value is None:
        return MISSING
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 60:
        return f"{value / 60:.1f} min"
    if value >= 1 or value == 0:
        return f"{value:.1f} s"
    return f"{value * 1000:.1f} ms"


def _plain(unit: str, decimals: int = 0):
    return lambda value: MISSING if value is None else f"{value:,.{decimals}f} {unit}"


# (column heading, ConfigurationCost attribute, formatter), in the order the cost tables show them.
COST_COLUMNS = (
    ("training time", "training_seconds", format_seconds),
    ("tokens/s", "tokens_per_second", _plain("tok/s")),
    ("peak memory", "peak_memory_mb", _plain("MB")),
    ("trainable params", "trainable_params", format_count),
    ("total params", "total_params", format_count),
    ("model size", "artifact_mb", _plain("MB", 1)),
    ("eval latency / example", "eval_seconds_per_example", format_seconds),
)


def cost_cells(cost: ConfigurationCost) -> list[str]:
    return [formatter(getattr(cost, attribute)) for _, attribute, formatter in COST_COLUMNS]


def slug(name: str) -> str:
    """A file-name-safe form of a task or run name (plots, per-run pages)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "unnamed"
