"""kill -9 a run at several points, run it again: the results equal those of a run never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_runner import tiny_recipes, write_run_suite

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATIONS = ["base", "adapter"]
TASKS = ("errno-qa", "perplexity")


def spec_file(tmp_path, suite) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "suite": str(suite), "model": "tiny-random-llama",
                                    "configurations": CONFIGURATIONS, "profile": "quick", "device": "cpu",
                                    "recipes": tiny_recipes(tmp_path)}))
    return path


def start(spec: Path, root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOMAINBENCH_CACHE": str(root / "cache")}
    return subprocess.Popen([sys.executable, "-m", "cli", "run", str(spec), "--output", str(root / "runs")],
                            env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run_to_the_end(spec: Path, root: Path) -> None:
    process = start(spec, root)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()[-2000:]


def kill_when(spec: Path, root: Path, reached, what: str) -> None:
    """Start the run and SIGKILL it the moment `reached()` holds (it must hold before the run ends)."""
    process = start(spec, root)
    while not reached():
        assert process.poll() is None, f"the run ended before {what}"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def outcomes(run_dir: Path) -> dict:
    """What a result says about the model: metrics and every example's prediction and scores.

    Not timings, and not the input key: the adapter's config names the base model's path, which
    is in each run's own cache here.
    """
    found = {}
    for configuration in CONFIGURATIONS:
        for task in TASKS:
            result = json.loads((run_dir / "results" / configuration / f"{task}.json").read_text())
            found[configuration, task] = (result["metrics"], result["examples"])
    return found


@pytest.mark.slow
def test_a_run_killed_at_each_point_resumes_to_the_results_of_an_uninterrupted_run(tmp_path):
    suite = write_run_suite(tmp_path / "suite")
    spec = spec_file(tmp_path, suite)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir()
    killed.mkdir()
    run_to_the_end(spec, clean)

    artifacts, results = killed / "cache" / "artifacts", killed / "runs" / "r" / "results"
    kill_when(spec, killed, lambda: any(artifacts.glob("lora-*.work")), "training")
    kill_when(spec, killed, lambda: (results / "base" / "errno-qa.json").is_file(), "the first result")
    kill_when(spec, killed, lambda: (results / "adapter" / "perplexity.json").is_file(), "the report")
    run_to_the_end(spec, killed)

    assert outcomes(killed / "runs" / "r") == outcomes(clean / "runs" / "r")
    adapter = "adapter_model.safetensors"
    assert [p.read_bytes() for p in (clean / "cache" / "artifacts").glob(f"*/{adapter}")] == [
        p.read_bytes() for p in artifacts.glob(f"*/{adapter}")]
    assert list(killed.rglob(".*")) == []  # no staging dir, temporary file or journal left behind
