"""The regression gate: paired tests on shared examples, tolerances, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_runs import (
    ANSWERS,
    NER_GOLD,
    ner_result,
    qa_predictions_result,
    qa_result,
    rag_qa_result,
    standard_run,
    write_run,
)

from cli.main import main
from harness.errors import DomainbenchError
from reports.compare import compare_runs, parse_max_drop
from reports.schema import result_path
from tasks import qa


def _gate(args, capsys) -> tuple[int, str, str]:
    try:
        main(["compare", *map(str, args), "--resamples", "300"])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_significant_drop_fails_the_gate_with_a_markdown_table(tmp_path, capsys):
    base, new = standard_run(tmp_path / "base"), standard_run(tmp_path / "new", "candidate", adapter_correct=20)
    code, out, _ = _gate([base, new], capsys)
    assert code == 1
    assert ("| configuration | task | metric | base | new | Δ [95% CI] | p | p adj. | n (differ) | verdict |"
            in out)
    assert "Family: " in out and "correction: Holm" in out and "Semantics: fail on evidence of a drop" in out
    assert "| adapter | errno-qa | f1 | 0.900 | 0.500 | -0.4 " in out and "**REGRESSION**" in out
    assert "| base | errno-qa | f1 | 0.250 | 0.250 | +0 " in out


def test_drop_within_tolerance_passes(tmp_path, capsys):
    base, new = standard_run(tmp_path / "base"), standard_run(tmp_path / "new", "candidate", adapter_correct=20)
    code, out, _ = _gate([base, new, "--max-drop", "f1=0.5", "--max-drop", "exact_match=0.5"], capsys)
    assert code == 0 and "drop within tolerance" in out and "No significant regression" in out


def test_improvement_and_identical_runs_pass(tmp_path, capsys):
    base = standard_run(tmp_path / "base", adapter_correct=20)
    code, out, _ = _gate([base, standard_run(tmp_path / "new", "candidate")], capsys)
    assert code == 0 and "improved" in out


def test_examples_are_matched_by_id_not_by_position(tmp_path):
    base = standard_run(tmp_path / "base")
    new = standard_run(tmp_path / "new", "candidate")
    path = result_path(new, "adapter", "errno-qa")
    record = json.loads(path.read_text())
    record["examples"].reverse()
    record["examples"] = record["examples"][:30]  # and one run scored fewer examples
    path.write_text(json.dumps(record))
    comparison = compare_runs(base, new, n_resamples=200)
    change = next(c for c in comparison.changes if (c.configuration, c.task, c.metric) == ("adapter", "errno-qa", "f1"))
    assert change.difference.difference == 0 and change.difference.n == 30
    assert any("compared on the 30 examples" in note for note in comparison.notes)


def test_runs_on_different_suites_are_refused_with_exit_2(tmp_path, capsys):
    base = write_run(tmp_path / "base", [qa_result("a", "base", 10)])
    new = write_run(tmp_path / "new", [qa_result("b", "base", 10, suite="legal")])
    code, out, err = _gate([base, new], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: cannot compare runs on different suites") and err.count("\n") == 1


@pytest.mark.parametrize("value", ["f1", "f1=-1", "=0.1", "f1=abc"])
def test_malformed_tolerance_is_a_user_error(value):
    with pytest.raises(DomainbenchError, match="--max-drop"):
        parse_max_drop([value])


def test_tolerance_for_an_unknown_metric_is_refused(tmp_path, capsys):
    run = write_run(tmp_path / "run", [qa_result("a", "base", 10)])
    code, _, err = _gate([run, run, "--max-drop", "rouge1=0.1"], capsys)
    assert code == 2 and "rouge1" in err


def test_a_planted_retrieval_drop_fails_the_gate(tmp_path, capsys):
    base = write_run(tmp_path / "base", [rag_qa_result("a", "rag", 10, n_found=40)])
    new = write_run(tmp_path / "new", [rag_qa_result("b", "rag", 10, n_found=5)])
    for tolerance in ([], ["--max-drop", "recall@4=0"]):
        code, out, _ = _gate([base, new, *tolerance], capsys)
        assert code == 1
        assert "| rag | errno-qa | recall@4 | 1.000 | 0.125 | -0.875 " in out and "**REGRESSION**" in out
        assert "| rag | errno-qa | mrr | 1.000 | 0.125 |" in out and "| rag | errno-qa | ndcg@4 | 1.000 | 0.125 |" in out
    tolerances = [f"--max-drop={metric}=0.9" for metric in ("recall@4", "mrr", "ndcg@4", "retrieved_recall@4",
                                                             "retrieved_mrr", "retrieved_ndcg@4")]
    code, out, _ = _gate([base, new, *tolerances], capsys)
    assert code == 0 and "drop within tolerance" in out


def test_tolerance_for_an_unknown_metric_names_the_metrics_that_exist(tmp_path, capsys):
    run = write_run(tmp_path / "run", [rag_qa_result("a", "rag", 10, n_found=40)])
    code, out, err = _gate([run, run, "--max-drop", "nosuch=0"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "nosuch" in err and "(metrics: exact_match, f1, mrr, ndcg@4, recall@4, retrieved_mrr, retrieved_ndcg@4, retrieved_recall@4)" in err


def test_a_per_type_f1_drop_fails_the_gate(tmp_path, capsys):
    base = write_run(tmp_path / "base", [ner_result("a", "base", [NER_GOLD] * 30)])
    new = write_run(tmp_path / "new", [ner_result("b", "base", ["FUNCTION: open"] * 30)])
    code, out, _ = _gate([base, new, "--max-drop", "f1=1", "--max-drop", "recall=1"], capsys)
    assert code == 1
    assert "| base | ner | f1\\_ERRNO | 1.000 | 0.000 | -1 " in out
    assert "| base | ner | f1\\_FUNCTION | 1.000 | 1.000 | +0 " in out


def test_a_metric_that_cannot_be_paired_is_listed_not_dropped(tmp_path, capsys):
    results = {}
    for side, correct in (("base", 36), ("new", 20)):
        result = qa_result(side, "base", correct)
        result.metrics["judge_score"] = {"value": correct / 40, "ci_low": 0.0, "ci_high": 1.0, "n": 40}
        results[side] = write_run(tmp_path / side, [result])
    code, out, _ = _gate([results["base"], results["new"], "--max-drop", "f1=1", "--max-drop", "exact_match=1"],
                         capsys)
    assert code == 0
    assert "| base | errno-qa | judge\\_score | 0.900 | 0.500 | -0.4 (unpaired) | — | — | — | not tested" in out
    assert "judge\\_score could not be paired" in out


def test_a_metric_only_one_run_reports_is_noted(tmp_path, capsys):
    base = write_run(tmp_path / "base", [rag_qa_result("a", "rag", 10, n_found=40)])
    new = write_run(tmp_path / "new", [qa_result("b", "rag", 10)])
    code, out, _ = _gate([base, new], capsys)
    assert code == 0 and ("recall@4, mrr, ndcg@4, retrieved\\_recall@4, retrieved\\_mrr, retrieved\\_ndcg@4 only in the "
                          "base run (not compared)") in out


def test_tolerance_for_a_metric_only_one_run_reports_is_refused(tmp_path, capsys):
    base = write_run(tmp_path / "base", [qa_result("a", "rag", 10)])
    new = write_run(tmp_path / "new", [rag_qa_result("b", "rag", 10, n_found=5)])
    code, _, err = _gate([base, new, "--max-drop", "recall@4=0"], capsys)
    assert code == 2 and "recall@4: no compared task reports this metric in both runs (metrics: exact_match, f1)" in err


def test_every_metric_the_task_type_computes_is_paired(tmp_path, capsys):
    base = write_run(tmp_path / "base", [qa_predictions_result("a", "base", ANSWERS, metrics=tuple(qa.METRICS))])
    wordy = [f"the answer is {answer}" for answer in ANSWERS]
    new = write_run(tmp_path / "new", [qa_predictions_result("b", "base", wordy, metrics=tuple(qa.METRICS))])
    code, out, _ = _gate([base, new, "--max-drop", "exact_match=1", "--max-drop", "f1=1"], capsys)
    assert code == 0 and "could not be paired" not in out
    assert set(qa.METRICS) <= {line.split(" | ")[2].replace("\\", "") for line in out.splitlines()
                               if line.startswith("| base | errno-qa |")}


def test_three_flipped_examples_cannot_decide_and_exit_3(tmp_path, capsys):
    """The issue's row: 3 of 3 examples flipped is p = 0.25 at best — neither pass nor regression."""
    base = write_run(tmp_path / "base", [qa_result("a", "base", 3, n=3)])
    new = write_run(tmp_path / "new", [qa_result("b", "base", 0, n=3)])
    code, out, _ = _gate([base, new], capsys)
    assert code == 3 and "REGRESSION" not in out
    assert "cannot decide at this n (only 3 of 3 examples differ: the smallest p they could give is 0.25" in out
    assert "cannot decide at their n" in out


def test_the_family_is_corrected_together_and_named(tmp_path, capsys):
    """A drop significant alone (p = 0.031 on 6 of 6 examples) is not one of a Holm family of 4 tests."""
    base = write_run(tmp_path / "base", [qa_result("a", "base", 40), qa_result("a", "adapter", 40)])
    new = write_run(tmp_path / "new", [qa_result("b", "base", 34), qa_result("b", "adapter", 40)])
    code, out, _ = _gate([base, new, "--correction", "none"], capsys)
    assert code == 1 and "Family: 4 tests at α = 0.05, correction: none" in out
    code, out, _ = _gate([base, new], capsys)
    assert code == 0 and "Family: 4 tests at α = 0.05, correction: Holm" in out
    assert "| base | errno-qa | f1 | 1.000 | 0.850 |" in out and "| 0.0312 | 0.125 | 40 (6) |" in out


def test_primary_only_gates_one_metric_per_task(tmp_path, capsys):
    base = write_run(tmp_path / "base", [qa_result("a", "base", 40)])
    new = write_run(tmp_path / "new", [qa_result("b", "base", 34)])
    code, out, _ = _gate([base, new, "--primary-only", "--correction", "none"], capsys)
    assert code == 1 and "Family: 1 tests" in out
    assert "| base | errno-qa | f1 |" in out and "| base | errno-qa | exact\\_match |" not in out


def test_non_inferiority_passes_only_on_evidence_and_names_the_drop_ruled_out(tmp_path, capsys):
    base = write_run(tmp_path / "base", [qa_result("a", "base", 40)])
    same = write_run(tmp_path / "same", [qa_result("b", "base", 40)])
    worse = write_run(tmp_path / "worse", [qa_result("c", "base", 36)])
    margins = ["--max-drop", "f1=0.2", "--max-drop", "exact_match=0.2"]
    code, out, _ = _gate([base, same, "--semantics", "non-inferiority", *margins], capsys)
    assert code == 0 and "All 2 metrics shown non-inferior" in out and "Semantics: non-inferiority" in out
    assert "non-inferior (drops larger than 0.0" in out
    code, out, _ = _gate([base, worse, "--semantics", "non-inferiority", *margins], capsys)
    assert code == 1 and "**NOT SHOWN NON-INFERIOR**" in out and "not ruled out" in out


def test_non_inferiority_without_a_margin_is_refused(tmp_path, capsys):
    run = write_run(tmp_path / "run", [qa_result("a", "base", 10)])
    code, out, err = _gate([run, run, "--semantics", "non-inferiority", "--max-drop", "f1=0.05"], capsys)
    assert code == 2 and out == "" and "exact_match=δ" in err and err.count("\n") == 1


def test_a_suite_names_its_primary_metric_and_validation_refuses_an_unknown_one(tmp_path):
    import shutil

    import yaml

    from tasks.suite import load_suite

    suite_dir = tmp_path / "tiny"
    shutil.copytree(Path(qa.__file__).parent / "suites" / "tiny", suite_dir)
    config = yaml.safe_load((suite_dir / "suite.yaml").read_text())
    qa_task = next(task for task in config["tasks"] if task["type"] == "qa")
    qa_task["primary_metric"] = "exact_match"
    (suite_dir / "suite.yaml").write_text(yaml.safe_dump(config))
    spec = next(task for task in load_suite(str(suite_dir)).tasks if task.type == "qa")
    assert spec.primary_metric == "exact_match"
    qa_task["primary_metric"] = "bleu"
    (suite_dir / "suite.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(DomainbenchError, match="primary_metric"):
        load_suite(str(suite_dir))


def test_primary_only_follows_the_recorded_primary_metric(tmp_path, capsys):
    results = []
    for run, correct in (("a", 40), ("b", 30)):
        result = qa_result(run, "base", correct)
        result.settings["primary_metric"] = "exact_match"
        results.append(write_run(tmp_path / run, [result]))
    code, out, _ = _gate([*results, "--primary-only"], capsys)
    assert code == 1 and "| base | errno-qa | exact\\_match |" in out and "| base | errno-qa | f1 |" not in out


def test_an_incomplete_result_is_listed_not_gated_unless_allowed(tmp_path, capsys):
    base = write_run(tmp_path / "base", [qa_result("a", "base", 40)])
    result = qa_result("b", "base", 20)
    result.settings["incomplete"] = {"failed_examples": ["q039"], "examples": 40}
    new = write_run(tmp_path / "new", [result])
    code, out, _ = _gate([base, new], capsys)
    assert code == 0 and "not gated (new incomplete: 1 of 40 examples failed)" in out and "Family: 0 tests" in out
    code, out, _ = _gate([base, new, "--allow-incomplete"], capsys)
    assert code == 1 and "**REGRESSION**" in out


def test_an_incomplete_result_is_never_starred(tmp_path):
    from reports.summary import build_summary

    better = qa_result("r", "full", 40)
    better.settings["incomplete"] = {"failed_examples": ["q000"], "examples": 41}
    run = write_run(tmp_path / "run", [qa_result("r", "base", 10), better])
    cells = next(table for table in build_summary(run, n_resamples=100).tables).cells
    assert not cells["full"]["f1"].best and not cells["base"]["f1"].best
