"""Numbers as every report shows them (Markdown, HTML, compare, leaderboard) — one place, one look."""

from __future__ import annotations

import re

from reports.costs import ConfigurationCost, CostItem

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


_tokens_per_second, _chunks_per_second, _megabytes = _plain("tok/s"), _plain("chunks/s"), _plain("MB")
_size = _plain("MB", 1)
# How each kind of peak-memory measurement (tuning/memory.py) is named in a table cell. A process's
# lifetime peak may belong to an earlier strategy trained in the same process: the cell says so.
MEMORY_KINDS = {"cuda_max_allocated": "CUDA", "cpu_peak_rss": "RSS", "cpu_process_max_rss": "process peak RSS",
                "cpu_max_rss": "process peak RSS"}

COST_HEADER = ("configuration", "item", "training time", "throughput", "peak memory", "trainable params",
               "total params", "size on disk", "eval latency / example")


def cost_rows(cost: ConfigurationCost) -> list[list[str]]:
    """Plain-text rows of the cost table for one configuration, in COST_HEADER's order.

    One row when it needs at most one artifact; otherwise its total, then a row per item (the
    configuration cell left blank), so that `distilled` shows its teacher and `adapter+rag` its index.
    """
    evaluation = format_seconds(cost.eval_seconds_per_example)
    if cost.items is None:
        return [[cost.configuration, "not recorded", *[MISSING] * 6, evaluation]]
    if not cost.items:
        return [[cost.configuration, "nothing trained", format_seconds(cost.training_seconds), MISSING, MISSING,
                 format_count(cost.trainable_params), MISSING, MISSING, evaluation]]
    if len(cost.items) == 1:
        return [[cost.configuration, cost.items[0].label, *_item_figures(cost.items[0]), evaluation]]
    peak = MISSING if cost.peak_memory_mb is None else f"{_megabytes(cost.peak_memory_mb)} (max of items)"
    total = [cost.configuration, "total", format_seconds(cost.training_seconds), MISSING, peak,
             format_count(cost.trainable_params), format_count(cost.total_params), _size(cost.artifact_mb), evaluation]
    return [total, *(["", f"↳ {item.label}", *_item_figures(item), ""] for item in cost.items)]


def _item_figures(item: CostItem) -> list[str]:
    """training time, throughput, peak memory, trainable params, total params, size on disk."""
    throughput = (_chunks_per_second(item.chunks_per_second) if item.is_index
                  else _tokens_per_second(item.tokens_per_second))
    memory = _megabytes(item.peak_memory_mb)
    if item.peak_memory_mb is not None and item.peak_memory_kind:
        memory += f" ({MEMORY_KINDS.get(item.peak_memory_kind, item.peak_memory_kind)})"
    return [format_seconds(item.seconds), throughput, memory, format_count(item.trainable_params),
            format_count(item.total_params), _size(item.artifact_mb)]


def slug(name: str, *, fallback: str = "unnamed") -> str:
    """A file-name-safe form of a name (run dirs, index dirs, plots, per-run pages): the one rule for all.

    Letters, digits and `_ . + -` stay (configurations are named with `+`); any other run becomes `-`.
    """
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-._") or fallback
