"""Load tests attached to a run: shown by its report and the leaderboard beside quality, and kept as text."""

from __future__ import annotations

import json

import pytest
from report_runs import SCRIPT_OUTPUT, attach_load_test, standard_run

from cli.main import main


def test_report_shows_every_level_of_each_attached_load_test(tmp_path):
    run = standard_run(tmp_path / "run")
    attach_load_test(run, "adapter", p95=0.8, tokens_per_second=120.0)
    main(["report", str(run)])
    markdown = (run / "report.md").read_text()
    section = markdown[markdown.index("## Serving under load"):markdown.index("## Cost per configuration")]
    # Levels in concurrency order; configuration, engine and endpoint on the first row.
    assert ("| adapter | vLLM | http://127.0.0.1:8000/v1 | 1 in flight | 32 | 100.0 ms | 200.0 ms | 240.0 ms | "
            "12.5 ms | ") in section
    assert "| 8 in flight | 32 | 400.0 ms | 800.0 ms | 960.0 ms | 50.0 ms | 90.0 ms | 120.0 | 24.80 | 3.1% |" in section
    assert "manpages prompts, at most 32 tokens each" in section
    assert markdown.index("## Results per task") < markdown.index("## Serving under load")
    page = (run / "report.html").read_text()
    assert "<h2>Serving under load</h2>" in page and "800.0 ms" in page and "vLLM" in page
    (load_test,) = json.loads((run / "summary.json").read_text())["load_tests"].values()
    assert load_test["configuration"] == "adapter" and len(load_test["levels"]) == 2


def test_open_loop_levels_are_named_by_their_rate_and_the_busiest_is_the_fastest(tmp_path):
    run = standard_run(tmp_path / "run")
    attach_load_test(run, "adapter", p95=0.8, tokens_per_second=120.0, rates=(0.5, 4.0))
    main(["report", str(run)])
    section = (run / "report.md").read_text().split("## Serving under load")[1]
    assert section.index("| 0.5 req/s poisson (peak 1 in flight) | 32 |") < section.index(
        "| 4 req/s poisson (peak 8 in flight) | 32 | 400.0 ms | 800.0 ms |")
    main(["leaderboard", str(run), "--out", str(tmp_path / "site")])
    assert "| 800.0 ms (4 req/s poisson (peak 8 in flight)) |" in (tmp_path / "site" / "LEADERBOARD.md").read_text()


def test_a_run_without_load_tests_has_no_such_section(tmp_path):
    run = standard_run(tmp_path / "run")
    main(["report", str(run)])
    assert "Serving under load" not in (run / "report.md").read_text()
    assert "Serving under load" not in (run / "report.html").read_text()


def test_what_the_endpoint_says_stays_text(tmp_path):
    run = standard_run(tmp_path / "run")
    attach_load_test(run, "adapter", engine=SCRIPT_OUTPUT, served_model=SCRIPT_OUTPUT,
                     endpoint="http://h/v1?<script>alert(3)</script>")
    main(["report", str(run)])
    page = (run / "report.html").read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page
    markdown = (run / "report.md").read_text()
    assert "<script>" not in markdown.replace(f"` {SCRIPT_OUTPUT} `", "")  # only the example's code span


def test_leaderboard_shows_p95_and_tokens_per_second_beside_quality_where_present(tmp_path):
    loaded = standard_run(tmp_path / "nightly")
    attach_load_test(loaded, "adapter", p95=0.8, tokens_per_second=120.0)
    plain = standard_run(tmp_path / "candidate", "candidate", adapter_correct=20)
    main(["leaderboard", str(loaded), str(plain), "--out", str(tmp_path / "site")])
    markdown = (tmp_path / "site" / "LEADERBOARD.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| run "))
    assert header.endswith("| p95 latency under load | output tok/s under load |")
    rows = {tuple(cell.strip() for cell in line.split("|")[1:4]): line for line in markdown.splitlines()
            if line.startswith("| [")}
    assert rows[("[nightly](runs/nightly/index.html)", "manpages", "adapter")].endswith(
        "| 800.0 ms (8 in flight) | 120.0 tok/s (8 in flight) |")
    assert rows[("[nightly](runs/nightly/index.html)", "manpages", "base")].endswith("| — | — |")
    index = (tmp_path / "site" / "index.html").read_text()
    assert '<td class="num" data-sort="-0.8">800.0 ms (8 in flight)</td>' in index
    assert '<td class="num" data-sort="120.0">120.0 tok/s (8 in flight)</td>' in index


def test_leaderboard_without_load_tests_has_no_serving_columns(tmp_path):
    run = standard_run(tmp_path / "nightly")
    main(["leaderboard", str(run), "--out", str(tmp_path / "site")])
    assert "under load" not in (tmp_path / "site" / "LEADERBOARD.md").read_text()
    assert "under load" not in (tmp_path / "site" / "index.html").read_text()


@pytest.mark.parametrize("change, message", [
    ({"kind": "other"}, 'kind: expected "loadtest"'),
    ({"levels": []}, "levels: expected a non-empty list"),
    ({"levels": [{"concurrency": 1}]}, "levels[0]: missing requests"),
])
def test_a_malformed_load_test_names_its_file_and_field(change, message, tmp_path, capsys):
    run = standard_run(tmp_path / "run")
    path = attach_load_test(run, "adapter")
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(run)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert str(path) in error and message in error
