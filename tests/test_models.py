"""Model sources: every spec kind resolves offline, and bad specs fail with one clear line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli.main import cli, main
from harness.errors import DomainbenchError
from harness.models import load_model, model_fingerprint, resolve_model


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "cache"


def test_builtin_tiny_model_is_built_once_into_the_cache(cache):
    first = resolve_model("tiny-random-llama")
    assert first == cache / "models" / "tiny-random-llama"
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("tiny-random-llama") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime


def test_local_directory_loads_with_fingerprint(cache, tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    assert loaded.path == tiny_model_dir
    assert loaded.fingerprint == model_fingerprint(tiny_model_dir)
    assert loaded.tokenizer.pad_token is not None
    assert not loaded.model.training


def test_fingerprint_changes_when_weights_change(cache, tmp_path, tiny_model_dir):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert model_fingerprint(copy) == model_fingerprint(tiny_model_dir)
    config = json.loads((copy / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (copy / "config.json").write_text(json.dumps(config))
    assert model_fingerprint(copy) != model_fingerprint(tiny_model_dir)


@pytest.mark.parametrize("spec, message", [
    ("./no/such/dir", "no such file or directory"),
    ("/tmp/definitely-missing.gguf", "no such GGUF file"),
    ("no-such-org/no-such-model", "builtin models: smollm2-135m-instruct"),
])
def test_bad_specs_raise_one_clear_error(cache, spec, message):
    with pytest.raises(DomainbenchError, match=message):
        resolve_model(spec)


def test_directory_without_config_is_refused(cache, tmp_path):
    with pytest.raises(DomainbenchError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_corrupt_gguf_is_refused(cache, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(DomainbenchError, match="not a readable GGUF model"):
        resolve_model(str(broken))


def test_cli_turns_user_errors_into_one_line_and_exit_2(cache, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "prepare", "./missing-model"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: model ./missing-model: no such file or directory"]


def test_cli_version_and_models_list(cache):
    runner = CliRunner()
    assert "domainbench, version" in runner.invoke(cli, ["--version"]).output
    result = runner.invoke(cli, ["models", "list"])
    assert result.exit_code == 0
    assert "smollm2-135m-instruct" in result.output and "tiny-random-llama" in result.output


@pytest.mark.parametrize(("native", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_auto_dtype_on_cpu_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, native, expected):
    import torch

    import harness.models as models

    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: native)
    assert models.parse_dtype("auto", "cpu") == getattr(torch, expected)
    assert models.parse_dtype(None, "cpu") == getattr(torch, expected)
    assert models.parse_dtype("auto", "cuda") == torch.bfloat16
    assert models.parse_dtype("float32", "cpu") == torch.float32  # fp32 stays one flag away
