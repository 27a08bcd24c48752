"""Failures are flagged, never ranked: training that did not converge, degenerate output."""

from __future__ import annotations

import json

import pytest
from report_runs import (
    NER_GOLD,
    ner_result,
    not_converged,
    perplexity_result,
    qa_predictions_result,
    qa_result,
    standard_run,
    training_block,
    write_run,
)

from cli.main import main
from reports.summary import build_summary


def _run_with_a_failed_distillation(tmp_path, failed_purpose: str):
    """distilled has the best figures of all, but one of its artifacts did not converge."""
    distill, teacher = training_block(71.0), training_block(89.0, purpose="teacher")
    (distill if failed_purpose == "weights" else teacher)["convergence"] = not_converged()
    training = {"base": {}, "adapter": {"lora": training_block(39.0, purpose="adapter", trainable=150_000)},
                "distilled": {"distill": distill, "full": teacher}}
    results = [qa_result("r", "base", 10), qa_result("r", "adapter", 30), qa_result("r", "distilled", 39),
               perplexity_result("r", "base", -2.0), perplexity_result("r", "adapter", -1.9),
               perplexity_result("r", "distilled", -0.5)]
    return write_run(tmp_path / failed_purpose, results, training)


@pytest.mark.parametrize("failed_purpose", ["weights", "teacher"])
def test_a_configuration_that_did_not_converge_is_never_recommended_nor_starred(tmp_path, failed_purpose):
    summary = build_summary(_run_with_a_failed_distillation(tmp_path, failed_purpose), n_resamples=300)
    assert list(summary.not_converged) == ["distilled"]
    for recommendation in summary.recommendations:
        assert recommendation.best == "adapter" and recommendation.set_aside == ["distilled"]
        assert "distilled did not converge at this budget and is not ranked" in recommendation.sentence()
    # distilled is better than adapter, so no ranked configuration beat every other one.
    assert not any(cell.best for table in summary.tables for cells in table.cells.values() for cell in cells.values())


def test_the_report_shows_the_flag_and_the_dev_loss_figures(tmp_path):
    run = _run_with_a_failed_distillation(tmp_path, "weights")
    main(["report", str(run)])
    markdown = (run / "report.md").read_text()
    assert "## Did not converge at this budget" in markdown
    assert ("- **distilled**: distill (weights) did not converge at this budget: dev loss before 2.300 → best 2.300 "
            "→ final 5.100; dev loss ended above where it started") in markdown
    assert "| distilled ⚠ did not converge | 0.975 [" in markdown  # still in the tables, flagged
    page = (run / "report.html").read_text()
    assert "<td>distilled <span class=\"flag\">⚠ did not converge</span></td>" in page
    assert "final 5.100; dev loss ended above where it started" in page
    record = json.loads((run / "summary.json").read_text())
    assert record["not_converged"]["distilled"][0]["dev_loss_final"] == 5.1
    assert record["recommendations"][0]["best"] == "adapter"
    main(["leaderboard", str(run), "--out", str(tmp_path / "site")])
    assert "| distilled ⚠ did not converge | 0.975 [" in (tmp_path / "site" / "LEADERBOARD.md").read_text()


def test_every_configuration_failing_leaves_nothing_to_recommend(tmp_path):
    training = {c: {"full": training_block(10.0, convergence=not_converged())} for c in ("a", "b")}
    run = write_run(tmp_path / "run", [qa_result("r", "a", 10), qa_result("r", "b", 30)], training)
    recommendation = build_summary(run, n_resamples=100).recommendations[0]
    assert recommendation.best is None
    assert recommendation.sentence() == ("errno-qa: no configuration can be recommended on f1 (a, b did not converge "
                                         "at this budget and are not ranked).")


def test_results_without_convergence_records_render_unflagged(tmp_path):
    run = standard_run(tmp_path / "run")
    main(["report", str(run)])
    markdown = (run / "report.md").read_text()
    assert "did not converge" not in markdown and "⚠" not in markdown
    assert json.loads((run / "summary.json").read_text())["not_converged"] == {}


def test_degenerate_output_shares_are_tabled_and_called_out(tmp_path):
    empty_answers = [""] * 30 + [f"E{i}" for i in range(30, 40)]
    looping = ["E0 E0 E0 E0"] * 4 + [f"E{i}" for i in range(4, 40)]
    ner_outputs = ["I cannot find any entities here."] * 6 + ["none"] * 2 + [NER_GOLD] * 12
    results = [qa_predictions_result("r", "base", empty_answers), qa_predictions_result("r", "adapter", looping),
               ner_result("r", "base", ner_outputs), ner_result("r", "adapter", [NER_GOLD] * 20),
               perplexity_result("r", "base", -2.0), perplexity_result("r", "adapter", -1.5)]
    run = write_run(tmp_path / "run", results)
    main(["report", str(run)])
    markdown = (run / "report.md").read_text()
    assert "| task | configuration | n | empty | loop | unparseable |" in markdown
    assert "| errno-qa | base | 40 | 75% | 0% | — |" in markdown
    assert "| errno-qa | adapter | 40 | 0% | 10% | — |" in markdown
    assert "| ner | base | 20 | 0% | 0% | 30% |" in markdown
    assert "manpage-ppl |" not in markdown.split("## Degenerate output")[1].split("## Results per task")[0]
    assert ("- **errno-qa: base's output is degenerate (75% empty of 40 predictions; threshold 25%) — its figures "
            "measure that failure**") in markdown
    assert "- **ner: base's output is degenerate (30% unparseable" in markdown
    assert "adapter's output is degenerate" not in markdown  # 10% loops stay under the threshold
    assert "<td class=\"num\">75%</td>" in (run / "report.html").read_text()
    shares = json.loads((run / "summary.json").read_text())["degenerate"]
    assert shares["ner"]["base"] == {"n": 20, "empty": 0.0, "loop": 0.0, "unparseable": 0.3}
