"""What a kill leaves behind is cleaned by the next run, and the report set is published whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from report_runs import qa_result, write_run

from harness.atomic import JOURNAL, publish_files, roll_forward, staged_dir
from reports.run_report import REPORT_HTML, REPORT_MD, write_report
from reports.summary import SUMMARY_CSV, SUMMARY_JSON

REPORT_SET = (REPORT_MD, REPORT_HTML, SUMMARY_JSON, SUMMARY_CSV)


def killed_while_publishing(target) -> None:
    """A process killed (SIGKILL) halfway through writing an artifact into its staging dir."""
    script = textwrap.dedent(f"""
        import os, signal
        from harness.atomic import staged_dir
        with staged_dir({str(target)!r}) as staging:
            (staging / "model.safetensors").write_bytes(b"half of the weights" * 1000)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == -9


def hidden_entries(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_the_staging_dir_of_a_killed_publish_is_removed_by_the_next_one(tmp_path):
    target = tmp_path / "artifact"
    killed_while_publishing(target)
    assert len(hidden_entries(tmp_path)) == 1 and not target.exists()
    with staged_dir(target) as staging:
        (staging / "model.safetensors").write_text("whole")
    assert hidden_entries(tmp_path) == []
    assert (target / "model.safetensors").read_text() == "whole"


def test_a_staging_dir_of_a_live_process_is_left_alone(tmp_path):
    live = tmp_path / f".artifact.staging-{os.getpid()}-abc"
    live.mkdir()
    with staged_dir(tmp_path / "artifact"):
        pass
    assert live.is_dir()


def test_a_staging_dir_older_than_the_process_holding_its_pid_is_removed(tmp_path):
    """The pid was reused by a later process: the owner is gone."""
    stale = tmp_path / f".artifact.staging-{os.getpid()}-abc"
    stale.mkdir()
    day_ago = time.time() - 86400
    os.utime(stale, (day_ago, day_ago))
    with staged_dir(tmp_path / "artifact"):
        pass
    assert not stale.exists()


def report_set(run_dir) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in REPORT_SET}


def test_a_re_render_that_dies_midway_leaves_the_previous_report_set_whole(tmp_path, monkeypatch):
    import reports.run_report

    run_dir = write_run(tmp_path / "run", [qa_result("r", "base", 1, n=3)])
    write_report(run_dir)
    before = report_set(run_dir)
    write_run(run_dir, [qa_result("r", "base", 2, n=4)])

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill between two renders

    monkeypatch.setattr(reports.run_report, "render_html", killed)
    with pytest.raises(KeyboardInterrupt):
        write_report(run_dir)
    assert report_set(run_dir) == before
    assert hidden_entries(run_dir) == []


def test_a_publish_killed_between_renames_is_rolled_forward(tmp_path, monkeypatch):
    import harness.atomic

    publish_files(tmp_path, {"report.md": b"n=3", "summary.json": b'{"n": 3}'})
    replace, moved = os.replace, []

    def killed_after_one(source, target):
        if moved:
            raise KeyboardInterrupt
        moved.append(target)
        replace(source, target)

    monkeypatch.setattr(harness.atomic.os, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        publish_files(tmp_path, {"report.md": b"n=4", "summary.json": b'{"n": 4}'})
    monkeypatch.setattr(harness.atomic.os, "replace", replace)
    assert (tmp_path / JOURNAL).is_file()
    roll_forward(tmp_path)
    assert (tmp_path / "report.md").read_bytes() == b"n=4"
    assert json.loads((tmp_path / "summary.json").read_text()) == {"n": 4}
    assert hidden_entries(tmp_path) == []


def test_a_report_set_publishes_into_a_relative_run_directory(tmp_path, monkeypatch):
    """`make demo` writes to `runs/demo`, a relative path; the journal must still name its files."""
    from harness.atomic import publish_files

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo" / "plots").mkdir(parents=True)
    publish_files("runs/demo", {"report.md": b"new", "plots/a.png": b"png"})
    assert (tmp_path / "runs" / "demo" / "report.md").read_bytes() == b"new"
    assert (tmp_path / "runs" / "demo" / "plots" / "a.png").read_bytes() == b"png"
