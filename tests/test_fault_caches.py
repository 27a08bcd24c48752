"""A damaged cache entry is found by its manifest's hashes and built again; an identical rebuild is identical."""

from __future__ import annotations

import json

import pytest
from test_tuning_data import write_suite
from test_tuning_strategies import TINY_TRAIN

from harness.manifest import MANIFEST_FILE, read_manifest
from harness.models import model_fingerprint
from tuning.recipe import load_recipe


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return write_suite(tmp_path_factory.mktemp("suite") / "tiny")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path):
    """Same size, one weight byte changed: only a checksum sees it."""
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))


def lora_recipe(targets=("q_proj", "v_proj")):
    return load_recipe("lora", overrides={**TINY_TRAIN, "method": {"adapter": {
        "type": "lora", "r": 4, "lora_alpha": 8, "target_modules": list(targets)}}})


@pytest.mark.parametrize("damage", [truncate, flip_a_byte])
def test_a_damaged_full_artifact_is_trained_again_not_used(tiny_model_dir, suite, tmp_path, damage, capsys):
    from tuning.full import tune_full

    recipe = load_recipe("full", overrides=TINY_TRAIN)
    artifact = tune_full(str(tiny_model_dir), suite, recipe, output=tmp_path / "full")
    fingerprint = model_fingerprint(artifact)
    damage(artifact / "model.safetensors")
    assert tune_full(str(tiny_model_dir), suite, recipe, output=tmp_path / "full") == artifact
    assert "model.safetensors: corrupted" in capsys.readouterr().err
    assert model_fingerprint(artifact) == fingerprint  # training is seeded: the same weights again


@pytest.mark.parametrize("damage", [truncate, flip_a_byte])
def test_a_damaged_lora_adapter_is_trained_again_not_used(tiny_model_dir, suite, tmp_path, damage):
    from tuning.peft_adapters import tune_adapter

    artifact = tune_adapter(str(tiny_model_dir), suite, lora_recipe(), output=tmp_path / "lora")
    stamp = (artifact / MANIFEST_FILE).stat().st_mtime_ns
    damage(artifact / "adapter_model.safetensors")
    tune_adapter(str(tiny_model_dir), suite, lora_recipe(), output=tmp_path / "lora")
    assert (artifact / MANIFEST_FILE).stat().st_mtime_ns != stamp
    assert read_manifest(artifact)["files"]["adapter_model.safetensors"]["bytes"] == (
        artifact / "adapter_model.safetensors").stat().st_size


def test_an_intact_artifact_is_reused(tiny_model_dir, suite, tmp_path):
    from tuning.peft_adapters import tune_adapter

    artifact = tune_adapter(str(tiny_model_dir), suite, lora_recipe(), output=tmp_path / "lora")
    stamp = (artifact / MANIFEST_FILE).stat().st_mtime_ns
    tune_adapter(str(tiny_model_dir), suite, lora_recipe(), output=tmp_path / "lora")
    assert (artifact / MANIFEST_FILE).stat().st_mtime_ns == stamp


def test_the_lora_adapter_config_lists_its_modules_in_one_order(tiny_model_dir, suite, tmp_path):
    """PEFT writes target_modules in set order, which changes with the process's string hashing."""
    from tuning.peft_adapters import tune_adapter

    targets = ("v_proj", "up_proj", "q_proj", "o_proj", "k_proj", "gate_proj", "down_proj")
    artifact = tune_adapter(str(tiny_model_dir), suite, lora_recipe(targets), output=tmp_path / "lora")
    config = json.loads((artifact / "adapter_config.json").read_text())
    assert config["target_modules"] == sorted(targets)
    assert list(config) == sorted(config)


@pytest.mark.parametrize("damage", [truncate, flip_a_byte])
def test_a_damaged_converted_model_is_converted_again(tiny_model, tiny_tokenizer, tmp_path, monkeypatch, damage):
    """The builtin model's conversion from GGUF (here a stand-in file, converted to the tiny model)."""
    import harness.models
    from harness.models import resolve_model

    conversions = []

    def convert(gguf):
        conversions.append(gguf)
        return tiny_model, tiny_tokenizer

    monkeypatch.setattr(harness.models, "_load_gguf", convert)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    converted = resolve_model(str(gguf))
    assert resolve_model(str(gguf)) == converted and len(conversions) == 1
    damage(converted / "model.safetensors")
    assert resolve_model(str(gguf)) == converted and len(conversions) == 2
    assert read_manifest(converted)["files"]["model.safetensors"]["bytes"] == (
        converted / "model.safetensors").stat().st_size


def test_a_tampered_index_is_built_again_not_reused(tmp_path):
    from retrieval_fakes import fake_encoder

    from harness.tiny import build_tiny_tokenizer
    from retrieval.corpus import Document
    from retrieval.index import CHUNKS_FILE, build_index

    documents = [Document(doc_id=f"d{i}", title=f"page {i}", text=f"open fails with error number {i}. " * 8)
                 for i in range(4)]
    encoder = fake_encoder(build_tiny_tokenizer())
    assert not build_index(documents, tmp_path / "index", encoder=encoder).reused
    assert build_index(documents, tmp_path / "index", encoder=encoder).reused
    chunks = tmp_path / "index" / CHUNKS_FILE
    chunks.write_text(chunks.read_text().replace("open", "OPEN", 1))
    assert not build_index(documents, tmp_path / "index", encoder=encoder).reused
    assert "OPEN" not in chunks.read_text()
