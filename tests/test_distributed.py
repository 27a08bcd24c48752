"""Evaluation under torchrun: two CPU processes on gloo give what one process gives."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.torchrun import run_checked, torchrun

WORKER = Path(__file__).with_name("distributed_engine_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def run_worker(out: Path, nproc: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        run_checked([sys.executable, str(WORKER), str(out)], env=env, cwd=ROOT)
    else:
        torchrun([str(WORKER), str(out)], nproc=nproc, env=env, cwd=ROOT)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_gloo_processes_equal_one(tmp_path):
    single = run_worker(tmp_path / "one.json", 1)
    sharded = run_worker(tmp_path / "two.json", 2)
    assert (single["world"], sharded["world"]) == (1, 2)
    assert sharded["generate"] == single["generate"]
    assert [g for _, g in sharded["loglikelihood"]] == [g for _, g in single["loglikelihood"]]
    assert [lp for lp, _ in sharded["loglikelihood"]] == pytest.approx([lp for lp, _ in single["loglikelihood"]], abs=1e-4)
    assert sharded["rolling"] == pytest.approx(single["rolling"], abs=1e-4)


@pytest.mark.slow
def test_eval_under_torchrun_writes_what_one_process_writes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DOMAINBENCH_CACHE": str(tmp_path / "cache")}
    # fp32, the reference: under bf16 the two shardings' batch shapes round differently.
    base = ["-m", "cli", "eval", "--model", "tiny-random-llama", "--suite", "tiny",
            "--dtype", "float32"]
    run_checked([sys.executable, *base, "--output", str(tmp_path / "one")], env=env, cwd=ROOT)
    torchrun([*base, "--output", str(tmp_path / "two")], nproc=2, env=env, cwd=ROOT)
    one = sorted((tmp_path / "one" / "results" / "base").glob("*.json"))
    assert [p.name for p in one] == sorted(p.name for p in (tmp_path / "two" / "results" / "base").glob("*.json"))
    for path in one:
        single = json.loads(path.read_text())
        sharded = json.loads((tmp_path / "two" / "results" / "base" / path.name).read_text())
        assert [e["prediction"] for e in sharded["examples"]] == [e["prediction"] for e in single["examples"]]
        for name, metric in single["metrics"].items():
            assert sharded["metrics"][name]["value"] == pytest.approx(metric["value"], rel=1e-5, abs=1e-4)
