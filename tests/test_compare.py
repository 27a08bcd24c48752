"""The regression gate: paired tests on shared examples, tolerances, exit codes."""

from __future__ import annotations

import json

import pytest
from report_runs import qa_result, standard_run, write_run

from harness.cli import main
from harness.errors import DomainbenchError
from reports.compare import compare_runs, parse_max_drop
from reports.schema import result_path


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
    assert "| configuration | task | metric | base | new | Δ [95% CI] | p | n | verdict |" in out
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
