"""report.md and report.html: complete, self-contained, and model output kept as text."""

from __future__ import annotations

import re

from report_runs import SCRIPT_OUTPUT, standard_run

from cli.main import main
from reports.render_markdown import markdown_code


def test_report_command_writes_every_report_file(tmp_path, capsys):
    run = standard_run(tmp_path / "run")
    main(["report", str(run)])
    for name in ("report.md", "report.html", "summary.json", "summary.csv", "plots/errno-qa-metrics.png",
                 "plots/errno-qa-quality-vs-cost.png"):
        assert (run / name).stat().st_size > 0, name
    assert "errno-qa: best f1 is adapter" in capsys.readouterr().out


def test_html_report_is_self_contained_with_embedded_plots(tmp_path):
    run = standard_run(tmp_path / "run")
    main(["report", str(run)])
    page = (run / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page) and "<link" not in page
    assert "Cost per configuration" in page and "2.0 min" in page and "—" in page


def test_model_output_stays_text_in_html_and_markdown(tmp_path):
    run = standard_run(tmp_path / "run", adapter_prediction=SCRIPT_OUTPUT)
    main(["report", str(run)])
    page = (run / "report.html").read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    markdown = (run / "report.md").read_text()
    assert f"` {SCRIPT_OUTPUT} `" in markdown  # inside a code span, where Markdown renders it as text
    assert markdown.count("<script>") == 1


def test_markdown_code_span_survives_backticks_pipes_and_newlines():
    span = markdown_code("a ``b`` | c\nd")
    assert span == "``` a ``b`` \\| c ⏎ d ```"
    assert markdown_code("x \\| y") == "` x \\\\\\| y `"  # the pipe stays escaped whatever precedes it
    assert markdown_code("") == "*(empty)*"


def test_each_task_states_n_and_the_difference_it_could_detect(tmp_path):
    import json

    run = standard_run(tmp_path / "run")
    main(["report", str(run)])
    report = (run / "report.md").read_text()
    tables = json.loads((run / "summary.json").read_text())["tables"]
    assert tables and all(table["detectable_difference"] >= 0 for table in tables)
    for table in tables:
        n = max(table["n_examples"].values())
        assert f"n = {n}: a difference in {table['headline']} smaller than about" in report.replace("\\_", "_")
    assert "would be detected less than 80% of the time" in (run / "report.html").read_text()
