"""The run summary: significance marks, recommendation, costs, summary files, rescore, bad input."""

from __future__ import annotations

import csv
import io
import json

import pytest
from report_runs import (
    perplexity_result,
    qa_result,
    rag_qa_result,
    standard_run,
    training_block,
    write_run,
)

from cli.main import main
from reports.schema import load_result, result_path
from reports.summary import build_summary, summary_csv, summary_json


def _cell(summary, task, configuration, metric):
    table = next(t for t in summary.tables if t.task == task)
    return table.cells[configuration][metric]


def test_best_is_marked_when_paired_bootstrap_separates_it(tmp_path):
    summary = build_summary(standard_run(tmp_path / "run"), n_resamples=300)
    assert _cell(summary, "errno-qa", "adapter", "f1").best
    assert not _cell(summary, "errno-qa", "rag", "f1").best
    # Lower perplexity is better: the adapter wins there too.
    assert _cell(summary, "manpage-ppl", "adapter", "token_perplexity").best


def test_no_best_is_marked_when_differences_are_not_significant(tmp_path):
    run = write_run(tmp_path / "run", [qa_result("r", "base", 10), qa_result("r", "adapter", 11),
                                       qa_result("r", "rag", 11)])
    summary = build_summary(run, n_resamples=300)
    assert not any(cell.best for table in summary.tables for cells in table.cells.values() for cell in cells.values())
    assert not summary.recommendations[0].best_is_significant


def test_best_is_marked_on_retrieval_metrics_too(tmp_path):
    run = write_run(tmp_path / "run", [rag_qa_result("r", "rag", 10, n_found=40),
                                       rag_qa_result("r", "adapter+rag", 10, n_found=5)])
    summary = build_summary(run, n_resamples=300)
    for metric in ("recall@4", "mrr", "ndcg@4"):
        assert _cell(summary, "errno-qa", "rag", metric).best and not _cell(summary, "errno-qa", "adapter+rag", metric).best


def test_recommendation_names_the_cheapest_configuration_not_significantly_worse_than_the_best(tmp_path):
    results = [qa_result("r", "base", 10), qa_result("r", "adapter", 11), qa_result("r", "full", 30)]
    training = {"adapter": {"lora": training_block(60.0, purpose="adapter")}, "full": {"full": training_block(600.0)}}
    run = write_run(tmp_path / "run", results, training)
    recommendation = build_summary(run, n_resamples=300).recommendations[0]
    assert (recommendation.best, recommendation.cheapest) == ("full", "full")
    results[2] = qa_result("r", "full", 12)
    run = write_run(tmp_path / "run2", results, training)
    recommendation = build_summary(run, n_resamples=300).recommendations[0]
    assert (recommendation.best, recommendation.cheapest) == ("full", "base")


def test_a_configuration_the_paired_test_separates_from_the_best_is_not_recommended_as_cheaper(tmp_path):
    # full answers every question base answers and 7 more: the intervals overlap, but on the shared
    # examples full is significantly better (exact p = 2/2^7 per metric, 0.031 after Holm over the 2
    # ★ claims). Five more would not do: 2/2^5 = 0.0625 is the best five differing examples can give.
    results = [qa_result("r", "base", 12), qa_result("r", "full", 19)]
    run = write_run(tmp_path / "run", results, {"full": {"full": training_block(600.0)}})
    summary = build_summary(run, n_resamples=300)
    full = _cell(summary, "errno-qa", "full", "f1")
    assert full.ci_low <= _cell(summary, "errno-qa", "base", "f1").ci_high and full.best
    assert summary.star_family == 2
    five_more = write_run(tmp_path / "five", [qa_result("r", "base", 12), qa_result("r", "full", 17)])
    assert not _cell(build_summary(five_more, n_resamples=300), "errno-qa", "full", "f1").best
    recommendation = summary.recommendations[0]
    assert (recommendation.best, recommendation.cheapest) == ("full", "full")
    assert "every cheaper configuration is significantly worse" in recommendation.sentence()
    # The cheapest configuration as the best: nothing cheaper to weigh.
    results = [qa_result("r", "base", 17), qa_result("r", "full", 12)]
    run = write_run(tmp_path / "run2", results, {"full": {"full": training_block(600.0)}})
    recommendation = build_summary(run, n_resamples=300).recommendations[0]
    assert (recommendation.best, recommendation.cheapest) == ("base", "base")
    assert recommendation.sentence().endswith("; it is also the cheapest configuration.")


def test_costs_come_from_the_results_and_missing_figures_stay_unknown(tmp_path):
    summary = build_summary(standard_run(tmp_path / "run"), n_resamples=50)
    adapter, rag, base = summary.costs["adapter"], summary.costs["rag"], summary.costs["base"]
    assert (adapter.training_seconds, adapter.trainable_params) == (120.0, 150000)
    assert adapter.items[0].tokens_per_second == 500.0 and adapter.items[0].label == "lora (adapter)"
    assert adapter.eval_seconds_per_example == pytest.approx(0.5)
    assert rag.training_seconds == 5.0 and rag.peak_memory_mb is None
    assert rag.items[0].tokens_per_second is None and rag.items[0].chunks_per_second == 240.0
    assert base.training_seconds == 0.0 and base.items == []  # nothing was built for it
    unrecorded = build_summary(write_run(tmp_path / "eval-only", [qa_result("r", "base", 10)]), n_resamples=50)
    assert unrecorded.costs["base"].items is None and unrecorded.costs["base"].training_seconds is None


def test_summary_json_and_csv_hold_every_metric_cell(tmp_path):
    summary = build_summary(standard_run(tmp_path / "run"), n_resamples=50)
    record = json.loads(summary_json(summary))
    assert record["tables"][0]["cells"]["adapter"]["f1"]["value"] == pytest.approx(36 / 40)
    assert record["costs"]["adapter"]["items"][0]["tokens_per_second"] == 500.0
    rows = list(csv.DictReader(io.StringIO(summary_csv(summary))))
    assert len(rows) == 3 * 2 + 3 * 2  # (configurations x metrics) for each of the two tasks
    adapter_f1 = next(r for r in rows if r["configuration"] == "adapter" and r["metric"] == "f1")
    assert adapter_f1["best"] == "1" and adapter_f1["converged"] == "1" and adapter_f1["training_seconds"] == "120.0"
    assert next(r for r in rows if r["configuration"] == "rag")["peak_memory_mb"] == ""


def test_rescore_recomputes_metrics_from_stored_predictions(tmp_path, capsys):
    run = standard_run(tmp_path / "run")
    path = result_path(run, "adapter", "errno-qa")
    record = json.loads(path.read_text())
    expected = record["metrics"]["f1"]
    record["metrics"]["f1"] = {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 40}
    record["examples"][0]["scores"] = {"exact_match": 0.0, "f1": 0.0}
    path.write_text(json.dumps(record))
    main(["rescore", str(run)])
    assert load_result(path).metrics["f1"] == expected
    assert load_result(path).examples[0]["scores"]["f1"] == 1.0
    assert "adapter/errno-qa: exact_match 0.900, f1 0.000 -> 0.900" in capsys.readouterr().out
    assert (run / "report.html").exists()


def test_a_run_from_an_older_schema_is_refused_with_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "run", [perplexity_result("r", "base", -2.0)])
    path = result_path(run, "base", "manpage-ppl")
    path.write_text(path.read_text().replace('"schema_version": 1', '"schema_version": 0'))
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(run)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "schema_version" in error and "rerun the evaluation" in error


def test_a_directory_without_results_is_not_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "not a run directory" in capsys.readouterr().err


def test_ner_predictions_show_their_entities_not_json():
    from reports.summary import as_text

    prediction = {"output": "PER: Ada\nORG: Bel", "entities": [
        {"type": "PER", "text": "Ada", "start": 0, "end": 3}, {"type": "ORG", "text": "Bel", "start": None, "end": None}]}
    assert as_text(prediction) == "PER: Ada; ORG: Bel (not in the text)"
    assert as_text([{"type": "PER", "text": "Ada", "start": 0, "end": 3}]) == "PER: Ada"
    assert as_text({"output": "none", "entities": []}) == "(no entities)"
    assert as_text({"a": 1}) == '{"a": 1}'
