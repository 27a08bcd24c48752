"""Strategies end to end on the tiny model: artifacts load back without domainbench and differ from base."""

from __future__ import annotations

import json
import os

import pytest
import torch
from test_tuning_data import write_suite

from harness.errors import DomainbenchError
from harness.manifest import MANIFEST_FILE, read_manifest
from harness.models import load_model
from harness.tiny import build_tiny_model, build_tiny_tokenizer
from tests.torchrun import torchrun
from tuning.distill import check_same_tokenizer, student_from_teacher
from tuning.peft_adapters import peft_config
from tuning.recipe import load_recipe

TINY_TRAIN = {"data": {"seq_len": 48, "max_train_examples": 16, "max_dev_examples": 4},
              "train": {"max_steps": 4, "batch_size": 2, "grad_accum": 1, "warmup_steps": 1, "eval_every": 2,
                        "checkpoint_every": 2}}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return write_suite(tmp_path_factory.mktemp("suite") / "tiny")


def _recipe(strategy: str, **method):
    overrides = {**TINY_TRAIN, "method": method} if method else TINY_TRAIN
    return load_recipe(strategy, overrides=overrides)


def _logits(model, tokenizer, text="Question: Which errno?\nAnswer:"):
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_lora_adapter_loads_with_plain_peft_and_changes_outputs(tiny_model_dir, suite, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuning.peft_adapters import tune_adapter

    artifact = tune_adapter(str(tiny_model_dir), suite, _recipe("lora"), output=tmp_path / "lora")
    manifest = read_manifest(artifact)
    assert (artifact / "adapter_config.json").is_file() and manifest["kind"] == "peft_adapter"
    assert manifest["inputs"]["code"]["peft"] is not None  # a PEFT upgrade trains the adapter again
    assert 0 < manifest["cost"]["trainable_parameters"] < manifest["cost"]["total_parameters"]
    assert manifest["quality"]["dev_loss_after"] < manifest["quality"]["dev_loss_before"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    before = _logits(base, tokenizer)
    adapted = PeftModel.from_pretrained(base, artifact).eval()
    assert not torch.allclose(_logits(adapted, tokenizer), before)
    assert json.loads((artifact / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)


def test_prefix_adapter_trains_saves_reloads_and_generates_left_padded(tiny_model_dir, suite, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuning.peft_adapters import tune_adapter

    artifact = tune_adapter(str(tiny_model_dir), suite, _recipe("prefix"), output=tmp_path / "prefix")
    tokenizer = AutoTokenizer.from_pretrained(artifact, padding_side="left")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    adapted = PeftModel.from_pretrained(base, artifact).eval()
    batch = tokenizer(["Question: Which errno?\nAnswer:", "open"], return_tensors="pt", padding=True)
    out = adapted.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape == (2, batch["input_ids"].shape[1] + 5)
    alone = adapted.generate(**tokenizer(["open"], return_tensors="pt"), max_new_tokens=5, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    assert out[1, -5:].tolist() == alone[0, -5:].tolist()


def test_prefix_with_gradient_checkpointing_is_refused(tiny_model_dir, suite):
    from tuning.peft_adapters import tune_adapter

    recipe = load_recipe("prefix", overrides={"train": {"gradient_checkpointing": True}})
    with pytest.raises(DomainbenchError, match="peft issue 869"):
        tune_adapter(str(tiny_model_dir), suite, recipe)


def test_unknown_lora_target_lists_the_models_module_names(tiny_model):
    with pytest.raises(DomainbenchError, match=r"target_modules: qkv_proj not in LlamaForCausalLM; its linear "
                                               r"modules: .*down_proj.*q_proj"):
        peft_config({"type": "lora", "r": 4, "target_modules": ["q_proj", "qkv_proj"]}, tiny_model)
    with pytest.raises(DomainbenchError, match=r"method.adapter.rank: not a field of peft.LoraConfig"):
        peft_config({"type": "lora", "rank": 4}, tiny_model)


@pytest.mark.parametrize("method", [{"type": "ia3", "target_modules": ["k_proj", "v_proj", "down_proj"],
                                     "feedforward_modules": ["down_proj"]},
                                    {"type": "prompt", "num_virtual_tokens": 4}])
def test_every_peft_method_goes_through_the_same_path(tiny_model_dir, suite, tmp_path, method):
    from tuning.peft_adapters import tune_adapter

    recipe = load_recipe(method["type"], overrides={**TINY_TRAIN, "method": {"adapter": method}})
    artifact = tune_adapter(str(tiny_model_dir), suite, recipe, output=tmp_path / method["type"])
    assert json.loads((artifact / "adapter_config.json").read_text())["peft_type"] == method["type"].upper().replace(
        "PROMPT", "PROMPT_TUNING")


def test_full_artifact_loads_with_load_model_and_is_reused_when_unchanged(tiny_model_dir, suite, tmp_path):
    from tuning.full import tune_full

    recipe = _recipe("full", freeze_embeddings=True, freeze_layers=1)
    artifact = tune_full(str(tiny_model_dir), suite, recipe, output=tmp_path / "full")
    manifest = read_manifest(artifact)
    loaded, base = load_model(str(artifact), device="cpu"), load_model(str(tiny_model_dir), device="cpu")
    trained, original = loaded.model.state_dict(), base.model.state_dict()
    assert torch.equal(trained["model.embed_tokens.weight"], original["model.embed_tokens.weight"])
    assert torch.equal(trained["model.layers.0.mlp.up_proj.weight"], original["model.layers.0.mlp.up_proj.weight"])
    assert not torch.equal(trained["model.layers.1.mlp.up_proj.weight"], original["model.layers.1.mlp.up_proj.weight"])
    assert set(manifest["cost"]) >= {"wall_seconds", "tokens_seen", "tokens_per_second", "peak_memory_bytes",
                                     "trainable_parameters", "total_parameters", "artifact_bytes"}
    stamp = (artifact / MANIFEST_FILE).stat().st_mtime_ns
    assert tune_full(str(tiny_model_dir), suite, recipe, output=tmp_path / "full") == artifact
    assert (artifact / MANIFEST_FILE).stat().st_mtime_ns == stamp


def test_a_tuned_artifact_is_trained_again_when_the_code_that_trains_it_changes(tiny_model_dir, suite, tmp_path,
                                                                              monkeypatch):
    import harness.manifest
    import tuning.artifact
    from tuning.full import tune_full

    recipe, output = _recipe("full"), tmp_path / "full"
    first = read_manifest(tune_full(str(tiny_model_dir), suite, recipe, output=output))
    assert first["inputs"]["code"]["training"] == tuning.artifact.TRAINING_CODE
    monkeypatch.setattr(tuning.artifact, "TRAINING_CODE", tuning.artifact.TRAINING_CODE + 1)  # a fix to the loop
    retrained = read_manifest(tune_full(str(tiny_model_dir), suite, recipe, output=output))
    assert retrained["input_hash"] != first["input_hash"] and retrained["created"] >= first["created"]
    installed = harness.manifest.installed_version
    monkeypatch.setattr(harness.manifest, "installed_version",
                        lambda name: "99.0" if name == "transformers" else installed(name))
    upgraded = read_manifest(tune_full(str(tiny_model_dir), suite, recipe, output=output))
    assert upgraded["input_hash"] not in (first["input_hash"], retrained["input_hash"])
    assert upgraded["inputs"]["code"]["transformers"] == "99.0"


def test_distilled_student_has_half_the_layers_and_trains(tmp_path, suite):
    from tuning.distill import tune_distill

    teacher_dir = tmp_path / "teacher"
    tokenizer = build_tiny_tokenizer()
    teacher = build_tiny_model(tokenizer, num_layers=4)
    teacher.save_pretrained(teacher_dir)
    tokenizer.save_pretrained(teacher_dir)
    recipe = _recipe("distill", teacher="base", student=None, keep_layers="alternate", temperature=2.0, alpha_kl=0.5)
    artifact = tune_distill(str(teacher_dir), suite, recipe, output=tmp_path / "student")
    student = load_model(str(artifact), device="cpu").model
    manifest = read_manifest(artifact)
    assert student.config.num_hidden_layers == 2
    comparison = manifest["student_vs_teacher"]
    assert comparison["student"]["layers"] == 2 and comparison["teacher"]["layers"] == 4
    assert comparison["student"]["parameters"] < comparison["teacher"]["parameters"]
    assert manifest["quality"]["dev_loss_after"] < manifest["quality"]["dev_loss_before"]


def test_student_from_teacher_copies_the_kept_layers(tiny_tokenizer):
    teacher = build_tiny_model(tiny_tokenizer, num_layers=4)
    student = student_from_teacher(teacher, [1, 3])
    assert torch.equal(student.model.layers[0].self_attn.q_proj.weight, teacher.model.layers[1].self_attn.q_proj.weight)
    assert torch.equal(student.model.layers[1].mlp.down_proj.weight, teacher.model.layers[3].mlp.down_proj.weight)
    with pytest.raises(DomainbenchError, match="keep_layers"):
        student_from_teacher(teacher, [0, 7])


def test_teacher_and_student_with_different_tokenizers_are_refused(tiny_model_dir, tmp_path):
    other = tmp_path / "other"
    tokenizer = build_tiny_tokenizer(vocab_size=320)
    build_tiny_model(tokenizer).save_pretrained(other)
    tokenizer.save_pretrained(other)
    with pytest.raises(DomainbenchError, match="different tokenizers .* choose a student with the teacher's tokenizer"):
        check_same_tokenizer(load_model(str(tiny_model_dir), device="cpu"), load_model(str(other), device="cpu"))


def _tiny_recipe_file(tmp_path):
    import yaml

    path = tmp_path / "tiny-recipe.yaml"
    path.write_text(yaml.safe_dump(TINY_TRAIN))
    return path


def test_cli_tune_lora_writes_an_artifact_and_prints_its_cost(tiny_model_dir, suite, tmp_path):
    from click.testing import CliRunner

    from cli.main import cli

    result = CliRunner().invoke(cli, ["tune", "lora", "--model", str(tiny_model_dir), "--suite", str(suite.path),
                                      "--config", str(_tiny_recipe_file(tmp_path)), "--output", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "tokens/s" in result.output and (tmp_path / "a" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_two_process_ddp_run_completes_and_matches_one_process(tiny_model_dir, suite, tmp_path):
    """torchrun with 2 gloo processes x batch 1 sees the same examples per step as 1 process x batch 2."""
    import yaml

    settings = {**TINY_TRAIN, "train": {**TINY_TRAIN["train"], "batch_size": 1}}
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(settings))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun(["-m", "cli", "tune", "full", "--model", str(tiny_model_dir), "--suite", str(suite.path),
              "--config", str(tmp_path / "ddp.yaml"), "--output", str(tmp_path / "ddp")], nproc=2, env=env)
    manifest = read_manifest(tmp_path / "ddp")
    assert manifest["cost"]["processes"] == 2 and manifest["quality"]["steps"] == 4
    from tuning.full import tune_full

    single = read_manifest(tune_full(str(tiny_model_dir), suite, _recipe("full"), output=tmp_path / "single"))
    torch.testing.assert_close(torch.tensor(manifest["quality"]["train_loss_curve"]),
                               torch.tensor(single["quality"]["train_loss_curve"]), rtol=1e-4, atol=1e-5)


def test_distill_learns_from_the_finetuned_model_it_is_given(tmp_path, suite):
    """The runner passes the finetuned weights it evaluates; the student must come from those."""
    from harness.models import model_fingerprint
    from tuning.distill import tune_distill

    teacher_dir = tmp_path / "finetuned"
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(tokenizer, num_layers=4).save_pretrained(teacher_dir)
    tokenizer.save_pretrained(teacher_dir)
    recipe = _recipe("distill", teacher="finetuned", student=None, keep_layers="alternate", temperature=2.0,
                     alpha_kl=0.5)
    artifact = tune_distill(str(teacher_dir), suite, recipe, output=tmp_path / "student", teacher=teacher_dir)
    manifest = read_manifest(artifact)
    assert manifest["inputs"]["teacher"]["fingerprint"] == model_fingerprint(teacher_dir)
    assert manifest["student_vs_teacher"]["teacher_path"] == str(teacher_dir)
