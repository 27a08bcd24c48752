"""Names that become file names (tasks, configurations) cannot lead a result file out of the run folder."""

from __future__ import annotations

import json
import textwrap

import pytest

from harness.errors import DomainbenchError
from reports.schema import result_path
from tasks.suite import load_suite


@pytest.mark.parametrize("name", ["../../x", "sub/task", ".hidden", "..", "a\\b"])
def test_a_task_name_that_is_not_a_file_name_is_refused_at_load_with_file_line_and_field(tmp_path, name):
    (tmp_path / "qa.jsonl").write_text(json.dumps({"id": "q1", "question": "Which errno?", "answers": ["EINTR"]}) + "\n")
    (tmp_path / "suite.yaml").write_text(textwrap.dedent(f"""\
        name: mine
        tasks:
          - name: errno-qa
            type: qa
            data: {{test: qa.jsonl}}
          - name: {json.dumps(name)}
            type: qa
            data: {{test: qa.jsonl}}
        """))
    with pytest.raises(DomainbenchError) as refused:
        load_suite(tmp_path)
    assert f"suite.yaml:6: {name}.name: expected letters, digits" in str(refused.value)
    assert "errno-qa" not in str(refused.value)  # an ordinary name passes


@pytest.mark.parametrize("configuration, task", [("base", "../../x"), ("..", "qa"), ("base", "a/b"), ("base", "..")])
def test_a_result_path_never_leaves_the_results_folder(tmp_path, configuration, task):
    with pytest.raises(DomainbenchError, match="is not a file name"):
        result_path(tmp_path / "run", configuration, task)
    assert result_path(tmp_path / "run", "adapter+merged", "errno-qa.v2") == (
        tmp_path / "run" / "results" / "adapter+merged" / "errno-qa.v2.json")
