"""The cost table, through the real path: `cost.training` blocks in result files -> `domainbench report`."""

from __future__ import annotations

import json

from report_runs import (
    index_block,
    perplexity_result,
    qa_result,
    training_block,
    write_run,
)

from cli.main import main

CONFIGURATIONS = ("base", "rag", "adapter", "finetuned", "distilled", "adapter+rag")


def _demo_like_run(tmp_path):
    """The demo's six configurations, each with the cost blocks the runner copies into its results."""
    lora = training_block(39.0, purpose="adapter", tokens=60000, peak_mb=700.0, trainable=150_000, size_mb=0.6)
    full = training_block(89.0, tokens=60000, peak_mb=1200.0)
    index = index_block(60.0, chunks=1200, size_mb=2.0)
    training = {"base": {}, "rag": {"index": index}, "adapter": {"lora": lora}, "finetuned": {"full": full},
                "distilled": {"distill": training_block(71.0, tokens=60000, peak_mb=800.0),
                              "full": {**full, "purpose": "teacher"}},
                "adapter+rag": {"lora": lora, "index": index}}
    results = [qa_result("demo", c, 10 + i) for i, c in enumerate(CONFIGURATIONS)]
    results += [perplexity_result("demo", c, -2.0) for c in CONFIGURATIONS]
    return write_run(tmp_path / "run", results, training)


def test_cost_table_itemises_what_each_configuration_needs(tmp_path):
    run = _demo_like_run(tmp_path)
    main(["report", str(run)])
    markdown = (run / "report.md").read_text()
    assert ("| configuration | item | training time | throughput | peak memory | trainable params | total params | "
            "size on disk | eval latency / example |") in markdown
    assert "| base | nothing trained | 0.0 s | — | — | 0 | — | — | 500.0 ms |" in markdown
    assert "| adapter | lora (adapter) | 39.0 s | 1,538 tok/s | 700 MB (RSS) | 150.0K | 135.0M | 0.6 MB | 500.0 ms |" \
        in markdown
    # distilled = its own training + its teacher's; memory is per item, the total shows the largest.
    assert ("| distilled | total | 2.7 min | — | 1,200 MB (max of items) | 270.0M | 135.0M | 520.0 MB | 500.0 ms |"
            in markdown)
    assert "|  | ↳ distill (weights) | 1.2 min | 845 tok/s | 800 MB (RSS) | 135.0M | 135.0M | 260.0 MB |  |" in markdown
    assert "|  | ↳ full (teacher) | 1.5 min | 674 tok/s | 1,200 MB (RSS) | 135.0M | 135.0M | 260.0 MB |  |" in markdown
    # adapter+rag = lora + index; the index shows chunks/s, and no tokens/s is made up for the total.
    assert "| adapter+rag | total | 1.6 min | — | 700 MB (max of items) | 150.0K | 135.0M | 2.6 MB | 500.0 ms |" \
        in markdown
    assert "|  | ↳ index | 1.0 min | 20 chunks/s | — | — | — | 2.0 MB |  |" in markdown


def test_itemised_costs_reach_the_html_report_and_summary_json(tmp_path):
    run = _demo_like_run(tmp_path)
    main(["report", str(run)])
    page = (run / "report.html").read_text()
    assert '<tr class="item"><td></td><td>↳ full (teacher)</td><td class="num">1.5 min</td>' in page
    summary = json.loads((run / "summary.json").read_text())
    distilled = summary["costs"]["distilled"]
    assert distilled["training_seconds"] == 160.0
    assert [(item["name"], item["purpose"], item["seconds"]) for item in distilled["items"]] == [
        ("distill", "weights", 71.0), ("full", "teacher", 89.0)]


def test_results_without_recorded_training_costs_still_render(tmp_path):
    old_blocks = {"adapter": {"lora": {"wall_seconds": 39.0, "tokens_seen": 60000, "tokens_per_second": 1538.0,
                                       "peak_memory_bytes": 700 * 2**20, "peak_memory_kind": "cpu_max_rss"}},
                  "rag": {"index": {"wall_seconds": 60.0, "chunks": 1200, "chunks_per_second": 20.0}}}
    run = write_run(tmp_path / "old", [qa_result("old", c, 10) for c in ("adapter", "rag")], old_blocks)
    main(["report", str(run)])
    markdown = (run / "report.md").read_text()
    assert "| adapter | lora | 39.0 s | 1,538 tok/s | 700 MB (process peak RSS) |" in markdown
    assert "| rag | index | 1.0 min | 20 chunks/s | — |" in markdown  # an index before blocks named their purpose
    run = write_run(tmp_path / "eval-only", [qa_result("eval", "base", 10)])
    main(["report", str(run)])
    assert "| base | not recorded | — | — | — | — | — | — | 500.0 ms |" in (run / "report.md").read_text()
