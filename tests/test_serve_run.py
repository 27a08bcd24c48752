"""`domainbench serve RUN --configuration C`: exactly what the run evaluated, every artifact fingerprinted
again from disk (weights, adapter, index), or refused with one line before anything loads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import start_serve, stop_serve

pytestmark = pytest.mark.slow
STARTUP_SECONDS = 120


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    """A run of the tiny model that evaluated adapter+rag, with its cache: (run dir, environment)."""
    from test_runner import tiny_recipes, write_run_suite

    from run.runner import run
    from run.spec import load_spec

    root = tmp_path_factory.mktemp("served-run")
    env = {"DOMAINBENCH_CACHE": str(root / "cache")}
    os.environ.update(env)  # the run's artifacts are built where the server will find them
    try:
        suite = write_run_suite(root / "suite")
        run_dir = run(load_spec(None, {
            "name": "s1", "suite": str(suite), "model": "tiny-random-llama", "output": str(root / "runs"),
            "profile": "quick", "device": "cpu", "recipes": tiny_recipes(root), "tasks": ["errno-qa"],
            "configurations": ["adapter+rag"]}), rebuild_report=False)
    finally:
        os.environ.pop("DOMAINBENCH_CACHE")
    return run_dir, env


def _recorded(run_dir) -> dict:
    import yaml

    return yaml.safe_load((run_dir / "run.yaml").read_text())


def test_serves_the_adapter_with_retrieval_a_run_evaluated_with_fingerprints_taken_from_disk(evaluated_run):
    from harness.models import model_fingerprint
    from retrieval.index import load_index

    run_dir, env = evaluated_run
    evaluated = json.loads((run_dir / "results" / "adapter+rag" / "errno-qa.json").read_text())["model"]
    recorded = _recorded(run_dir)
    process, url = start_serve([str(run_dir), "--configuration", "adapter+rag"], env)
    try:
        model = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]
        assert model["id"] == "s1/adapter+rag"
        on_disk = [model_fingerprint(recorded["weights"]["base"]["path"]),
                   model_fingerprint(recorded["adapters"]["lora"]["path"]),
                   load_index(recorded["index"]["path"]).manifest["input_hash"]]
        shown = [model[key] for key in ("fingerprint", "adapter_fingerprint", "index_fingerprint")]
        assert shown == on_disk == [evaluated[key] for key in ("fingerprint", "adapter_fingerprint",
                                                               "index_fingerprint")]
        prompt = "Question: Which errno means an argument is invalid?\nAnswer:"
        answer = httpx.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": 3, "echo": True},
                            timeout=30).json()
        assert answer["choices"][0]["text"].startswith("Reference documentation:")  # retrieval in front
        assert prompt in answer["choices"][0]["text"]
    finally:
        assert stop_serve(process) == 0


def _refusal(run_dir, env) -> str:
    """`serve` on the run as a process: it must exit 2 with one line (a server that starts instead is killed)."""
    done = subprocess.run([sys.executable, "-m", "cli", "serve", str(run_dir), "--configuration", "adapter+rag",
                           "--port", "0"], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=STARTUP_SECONDS)
    error = done.stderr.strip()
    assert done.returncode == 2 and error.count("\n") == 0, error
    return error


def test_a_swapped_adapter_is_refused(evaluated_run, tmp_path):
    from safetensors.torch import load_file, save_file

    run_dir, env = evaluated_run
    adapter_dir = _recorded(run_dir)["adapters"]["lora"]["path"]
    weights = next(p for p in os.listdir(adapter_dir) if p.endswith(".safetensors"))
    kept = shutil.copytree(adapter_dir, tmp_path / "kept")
    try:
        tensors = load_file(os.path.join(adapter_dir, weights))
        save_file({name: tensor * 2 for name, tensor in tensors.items()}, os.path.join(adapter_dir, weights))
        error = _refusal(run_dir, env)
    finally:
        shutil.copytree(kept, adapter_dir, dirs_exist_ok=True)
    assert error.startswith("error: artifact lora:") and "changed since the run evaluated it" in error


def test_an_index_rebuilt_from_other_inputs_is_refused(evaluated_run, tmp_path):
    from harness.manifest import read_manifest, write_manifest

    run_dir, env = evaluated_run
    index_dir = _recorded(run_dir)["index"]["path"]
    manifest = read_manifest(index_dir)
    try:
        # What a rebuild over another corpus leaves in the same directory: a manifest with another input hash.
        write_manifest(Path(index_dir), {**manifest, "input_hash": "0" * 64})
        error = _refusal(run_dir, env)
    finally:
        write_manifest(Path(index_dir), manifest)
    assert error.startswith("error: artifact index:") and "changed since the run evaluated it" in error
