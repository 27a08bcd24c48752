"""`domainbench serve --engine vllm`: what it refuses and the `vllm serve` command it hands the process to.

These run on a CPU: the command is captured instead of executed. test_serve_vllm_gpu.py runs vLLM itself.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
import yaml

from cli.main import main
from serve import served
from tuning.forms import form_fingerprint

VLLM = "/opt/vllm/bin/vllm"


class Executed(Exception):
    """os.execv was called: the command it would have run."""


@pytest.fixture
def captured_exec(monkeypatch):
    monkeypatch.setattr(served, "vllm_executable", lambda: VLLM)

    def execv(path, argv):
        raise Executed(path, argv)

    monkeypatch.setattr(os, "execv", execv)


def write_run(run_dir, model_dir, *, configurations, forms, fingerprint=None, dtype=None):
    """A run.yaml as the runner writes it, its weights and forms all pointing at `model_dir`."""
    block = {"path": str(model_dir), "fingerprint": fingerprint or form_fingerprint(model_dir)}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.yaml").write_text(yaml.safe_dump({
        "name": "r", "configurations": configurations, "spec": {"dtype": dtype}, "weights": {"base": block},
        "adapters": {"lora": block}, "forms": {form: block for form in forms}}))
    return run_dir


def _serve(capsys, *args: str) -> str:
    """Run `serve … --engine vllm`, expecting a one-line refusal (exit 2); the line."""
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", *args, "--engine", "vllm"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    return error


@pytest.mark.parametrize("configuration, reason", [
    ("adapter+rag", "vLLM cannot put retrieval in front"),
    ("base+gguf", "the gguf form is not a plain Hugging Face model dir"),
    ("adapter+merged+int8", "the int8 form is not a plain Hugging Face model dir"),
])
def test_retrieval_and_non_hf_forms_are_refused_with_one_line(configuration, reason, tmp_path, capsys):
    error = _serve(capsys, str(tmp_path), "--configuration", configuration)
    assert error.endswith(f"cannot be served by vLLM as evaluated ({reason})")


def test_a_gguf_model_is_refused(tmp_path, capsys):
    assert "is a GGUF file (serve it with --engine llama.cpp)" in _serve(capsys, "--model", str(tmp_path / "m.gguf"))


def test_an_adapter_is_served_as_the_runs_merged_form(tiny_model_dir, tmp_path, captured_exec):
    run = write_run(tmp_path / "run", tiny_model_dir, configurations=["base", "adapter", "adapter+merged"],
                    forms=["adapter+merged"], dtype="bfloat16")
    with pytest.raises(Executed) as executed:
        main(["serve", str(run), "--configuration", "adapter", "--engine", "vllm", "--port", "8123"])
    assert executed.value.args == (VLLM, [VLLM, "serve", str(tiny_model_dir), "--host", "127.0.0.1", "--port", "8123",
                                          "--served-model-name", "r/adapter", "--dtype", "bfloat16"])


def test_base_weights_are_served_as_they_are(tiny_model_dir, tmp_path, captured_exec):
    run = write_run(tmp_path / "run", tiny_model_dir, configurations=["base"], forms=[])
    with pytest.raises(Executed) as executed:
        main(["serve", str(run), "--configuration", "base", "--engine", "vllm"])
    assert executed.value.args[1][2:3] == [str(tiny_model_dir)] and executed.value.args[1][-1] == "auto"


def test_an_adapter_without_a_merged_form_in_the_run_is_refused(tiny_model_dir, tmp_path, capsys):
    run = write_run(tmp_path / "run", tiny_model_dir, configurations=["adapter"], forms=[])
    error = _serve(capsys, str(run), "--configuration", "adapter")
    assert "the run has no adapter+merged form" in error and "add adapter+merged" in error


def test_weights_changed_since_the_run_are_refused(tiny_model_dir, tmp_path, capsys):
    run = write_run(tmp_path / "run", tiny_model_dir, configurations=["base"], forms=[], fingerprint="0" * 64)
    assert "changed since the run evaluated it" in _serve(capsys, str(run), "--configuration", "base")


def test_missing_vllm_or_gpu_is_one_line(capsys):
    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        pytest.skip("vLLM and a GPU are here: the engine would start")
    error = _serve(capsys, "--model", "tiny-random-llama")
    missing = "needs vLLM" if importlib.util.find_spec("vllm") is None else "needs a CUDA GPU"
    assert error.startswith(f"error: serve --engine vllm: {missing}")
