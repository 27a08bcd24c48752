"""Off a terminal every long step still reports: a progress line at a steady interval (step/total, elapsed, ETA)."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

import harness.progress
from harness.progress import LoggedProgress, progress_bar

LINE = re.compile(r"^(?P<what>.+): (?P<done>\d+)/(?P<total>\d+) \(\d+%\) · elapsed \d+s( · ETA \d+s)?( · .+)?$")


def logged_lines(steps: int, *, interval: float, step_seconds: float) -> list[str]:
    out = io.StringIO()
    with LoggedProgress(console=Console(file=out, width=200), interval=interval) as progress:
        task = progress.add_task("training", total=steps, info="loss 2.0")
        for _ in range(steps):
            time.sleep(step_seconds)
            progress.advance(task)
        time.sleep(3 * interval)  # finished: no more lines
    return out.getvalue().splitlines()


def test_a_line_at_each_interval_with_step_total_elapsed_and_eta():
    lines = logged_lines(4, interval=0.05, step_seconds=0.06)
    assert len(lines) >= 3, lines
    assert all(LINE.match(line) for line in lines), lines
    assert any(" · ETA " in line and line.endswith("loss 2.0") for line in lines), lines
    done = [int(LINE.match(line)["done"]) for line in lines]
    assert done == sorted(done) and max(done) < 4  # a finished step prints nothing more


def test_a_step_slower_than_the_interval_still_gets_lines():
    """The timer prints, not the loop: one step of several intervals is not silence."""
    lines = logged_lines(1, interval=0.05, step_seconds=0.3)
    assert len(lines) >= 3 and all(line.startswith("training: 0/1 (0%)") for line in lines), lines


def test_off_a_terminal_progress_bars_log_lines(capsys, monkeypatch):
    monkeypatch.setattr(harness.progress, "LOG_INTERVAL_SECONDS", 0.05)
    with progress_bar() as progress:
        task = progress.add_task("Embedding 8 chunks", total=8, info="")
        progress.advance(task, 2)
        time.sleep(0.2)
    err = capsys.readouterr().err
    assert "Embedding 8 chunks: 2/8 (25%) · elapsed" in err, err


def test_training_logs_its_steps_off_a_terminal(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from test_tuning_data import write_suite
    from test_tuning_strategies import TINY_TRAIN

    from tuning.full import tune_full
    from tuning.recipe import load_recipe

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(harness.progress, "LOG_INTERVAL_SECONDS", 0.01)
    recipe = load_recipe("full", overrides={**TINY_TRAIN, "train": {**TINY_TRAIN["train"], "max_steps": 8}})
    tune_full(str(tiny_model_dir), write_suite(tmp_path / "suite"), recipe, output=tmp_path / "full")
    err = capsys.readouterr().err
    assert re.search(r": \d/8 \(\d+%\) · elapsed \d+s", err), err
