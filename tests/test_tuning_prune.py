"""The pruned form: whole layers removed by measured Block Influence, saved as a smaller plain HF model."""

from __future__ import annotations

import copy
import gzip
import json

import pytest
import torch
from test_tuning_data import write_suite

from harness.errors import DomainbenchError
from harness.manifest import MANIFEST_FILE
from harness.tiny import build_tiny_model, build_tiny_tokenizer
from tuning.prune import (
    block_influence,
    calibration_examples,
    calibration_texts,
    load_prune_recipe,
    prune_model,
    weight_bytes,
)

TEXTS = ["The open() system call opens the file specified by pathname. " * 3,
         "On error, -1 is returned and errno is set: EACCES, EEXIST, ENOENT, EINVAL.",
         "The rename() function renames a file, moving it between directories if required."]
PROMPT = "Question: Which header declares openat()? Answer:"


def _save(model, tokenizer, directory):
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def four_layers(tokenizer, tmp_path_factory):
    """A 4-layer tiny Llama and its saved dir."""
    model = build_tiny_model(tokenizer, num_layers=4)
    return model, _save(model, tokenizer, tmp_path_factory.mktemp("models") / "four")


@pytest.fixture(scope="module")
def identity_layer(tokenizer, tmp_path_factory):
    """The 4-layer tiny Llama with layer 2 made an identity: its attention and MLP add nothing to the stream."""
    model = build_tiny_model(tokenizer, num_layers=4, seed=1)
    with torch.no_grad():
        model.model.layers[2].self_attn.o_proj.weight.zero_()
        model.model.layers[2].mlp.down_proj.weight.zero_()
    return model, _save(model, tokenizer, tmp_path_factory.mktemp("models") / "identity")


def _recipe(**method):
    return load_prune_recipe(overrides={"method": {"calibration_seq_len": 32, **method}})


def _logits(model, tokenizer, text=PROMPT):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt"), use_cache=False).logits


def test_half_of_four_layers_leaves_two_in_a_smaller_dir_that_plain_transformers_loads(four_layers, tokenizer,
                                                                                          tmp_path):
    from transformers import AutoModelForCausalLM

    _, source = four_layers
    manifest = prune_model(source, tmp_path / "pruned", _recipe(ratio=0.5), calibration_texts=TEXTS)
    pruned = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").eval()
    assert pruned.config.num_hidden_layers == len(pruned.model.layers) == 2
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1]
    size = manifest["size"]
    assert (size["layers_before"], size["layers_after"]) == (4, 2)
    assert size["parameters_after"] == sum(p.numel() for p in pruned.parameters()) < size["parameters_before"]
    assert size["weight_bytes_before"] == weight_bytes(source)
    assert size["weight_bytes_after"] == weight_bytes(tmp_path / "pruned") < size["weight_bytes_before"]
    assert json.loads((tmp_path / "pruned" / MANIFEST_FILE).read_text())["pruning"] == manifest["pruning"]
    # The KV cache finds each layer by its renumbered layer_idx: cached greedy decoding matches uncached.
    ids = tokenizer(PROMPT, return_tensors="pt")
    cached = pruned.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    uncached = pruned.generate(**ids, max_new_tokens=6, do_sample=False, use_cache=False,
                               pad_token_id=tokenizer.pad_token_id)
    assert cached.tolist() == uncached.tolist()


def test_the_lowest_scoring_layers_go_and_logits_equal_the_original_without_them(four_layers, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    original, source = four_layers
    manifest = prune_model(source, tmp_path / "pruned", _recipe(ratio=0.5), calibration_texts=TEXTS)
    scores, removed = manifest["pruning"]["layer_scores"], manifest["pruning"]["removed_layers"]
    assert removed == sorted(sorted(range(4), key=lambda i: scores[i])[:2])
    reference = copy.deepcopy(original)
    reference.model.layers = torch.nn.ModuleList(
        layer for i, layer in enumerate(reference.model.layers) if i not in removed)
    pruned = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").eval()
    torch.testing.assert_close(_logits(pruned, tokenizer), _logits(reference, tokenizer))


def test_an_identity_layer_scores_zero_is_removed_first_and_changes_nothing(identity_layer, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    original, source = identity_layer
    manifest = prune_model(source, tmp_path / "pruned", _recipe(ratio=0.25), calibration_texts=TEXTS)
    scores = manifest["pruning"]["layer_scores"]
    assert manifest["pruning"]["removed_layers"] == [2]
    assert abs(scores[2]) < 1e-6 < min(scores[0], scores[1], scores[3])
    pruned = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").eval()
    torch.testing.assert_close(_logits(pruned, tokenizer), _logits(original, tokenizer))


def test_scores_ignore_padding(identity_layer, tokenizer):
    model, _ = identity_layer
    examples = calibration_examples(TEXTS, tokenizer, seq_len=32)
    batched = block_influence(model, examples, pad_id=tokenizer.pad_token_id)
    one_by_one = [block_influence(model, [example], pad_id=tokenizer.pad_token_id) for example in examples]
    tokens = [len(example["input_ids"]) for example in examples]
    weighted = [sum(s[i] * n for s, n in zip(one_by_one, tokens)) / sum(tokens) for i in range(4)]
    assert batched == pytest.approx(weighted, abs=1e-6)


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.25, True, "half", None])
def test_a_ratio_outside_zero_to_one_is_refused(ratio):
    with pytest.raises(DomainbenchError, match="method.ratio"):
        load_prune_recipe(overrides={"method": {"ratio": ratio}})


@pytest.mark.parametrize(("ratio", "why"), [(0.1, "removes none"), (0.9, "leaves none")])
def test_a_ratio_that_rounds_to_no_layer_or_every_layer_is_refused(four_layers, tmp_path, ratio, why):
    _, source = four_layers
    with pytest.raises(DomainbenchError, match=f"method.ratio: {ratio} of 4 layers {why}"):
        prune_model(source, tmp_path / "pruned", _recipe(ratio=ratio), calibration_texts=TEXTS)
    assert not (tmp_path / "pruned").exists()


def test_recipe_fields_are_checked_and_profiles_apply(tmp_path):
    with pytest.raises(DomainbenchError, match="method.rate: unknown field"):
        load_prune_recipe(overrides={"method": {"rate": 0.5}})
    with pytest.raises(DomainbenchError, match="method.heal_steps: expected a whole number >= 0"):
        load_prune_recipe(overrides={"method": {"heal_steps": -1}})
    with pytest.raises(DomainbenchError, match="method.score"):
        load_prune_recipe(overrides={"method": {"score": "magnitude"}})
    user = tmp_path / "mine.yaml"
    user.write_text("method: {ratio: 0.5}\nprofiles: {quick: {method: {calibration_examples: 3}}}\n")
    recipe = load_prune_recipe(config=user, profile="quick")
    assert recipe["method"]["ratio"] == 0.5 and recipe["method"]["calibration_examples"] == 3
    assert recipe["method"]["calibration_seq_len"] == 128 and recipe["profile"] == "quick"


def test_a_model_outside_the_llama_family_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(DomainbenchError, match="'gpt2' model; layer pruning supports Llama-family"):
        prune_model(tmp_path / "gpt2", tmp_path / "pruned", _recipe(ratio=0.5), calibration_texts=TEXTS)


def test_layer_types_keep_the_types_of_the_kept_layers(tokenizer, tmp_path):
    from transformers import AutoConfig, Qwen2Config, Qwen2ForCausalLM

    types = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"]
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, sliding_window=16, use_sliding_window=True,
                         layer_types=types, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    _save(Qwen2ForCausalLM(config), tokenizer, tmp_path / "qwen2")
    manifest = prune_model(tmp_path / "qwen2", tmp_path / "pruned", _recipe(ratio=0.5), calibration_texts=TEXTS)
    saved = AutoConfig.from_pretrained(tmp_path / "pruned")
    assert saved.layer_types == [types[i] for i in manifest["pruning"]["kept_layers"]]


def test_a_rerun_with_the_same_inputs_reuses_the_dir(four_layers, tmp_path):
    _, source = four_layers
    first = prune_model(source, tmp_path / "pruned", _recipe(ratio=0.5), calibration_texts=TEXTS)
    stamp = (tmp_path / "pruned" / MANIFEST_FILE).stat().st_mtime_ns
    assert prune_model(source, tmp_path / "pruned", _recipe(ratio=0.5), calibration_texts=TEXTS) == first
    assert (tmp_path / "pruned" / MANIFEST_FILE).stat().st_mtime_ns == stamp


def test_calibration_texts_come_from_the_train_split_only(tmp_path):
    suite = write_suite(tmp_path / "suite")
    with gzip.open(suite.corpus, "rt") as handle:
        splits = {json.loads(line)["text"]: json.loads(line)["split"] for line in handle}
    texts = calibration_texts(suite, 5, seed=0)
    assert len(texts) == 5 and {splits[text] for text in texts} == {"train"}
    assert calibration_texts(suite, 5, seed=0) == texts != calibration_texts(suite, 5, seed=1)


def test_healing_fine_tunes_the_pruned_model_through_the_training_loop(four_layers, tmp_path):
    from transformers import AutoModelForCausalLM

    _, source = four_layers
    suite = write_suite(tmp_path / "suite")
    recipe = load_prune_recipe(profile="quick", overrides={"method": {"ratio": 0.5, "heal_steps": 2}})
    manifest = prune_model(source, tmp_path / "healed", recipe, calibration_texts=TEXTS, suite=suite)
    assert manifest["heal"]["steps"] == 2 and manifest["heal"]["dev_loss_after"] is not None
    assert not (tmp_path / "healed.work").exists()
    unhealed = prune_model(source, tmp_path / "unhealed", {**recipe, "method": {**recipe["method"], "heal_steps": 0}},
                           calibration_texts=TEXTS)
    assert unhealed["pruning"]["removed_layers"] == manifest["pruning"]["removed_layers"]
    healed_weights = AutoModelForCausalLM.from_pretrained(tmp_path / "healed").state_dict()
    unhealed_weights = AutoModelForCausalLM.from_pretrained(tmp_path / "unhealed").state_dict()
    assert not torch.equal(healed_weights["model.layers.0.mlp.up_proj.weight"],
                           unhealed_weights["model.layers.0.mlp.up_proj.weight"])
    with pytest.raises(DomainbenchError, match="method.heal_steps: healing trains on a suite"):
        prune_model(source, tmp_path / "nosuite", recipe, calibration_texts=TEXTS)


@pytest.mark.slow
def test_the_builtin_model_loses_its_least_influential_layers(tmp_path):
    from harness.models import resolve_model
    from tasks.suite import load_suite

    recipe = load_prune_recipe(overrides={"method": {"ratio": 0.2, "calibration_examples": 4,
                                                     "calibration_seq_len": 64}})
    texts = calibration_texts(load_suite("manpages"), 4, seed=recipe["seed"])
    manifest = prune_model(resolve_model("smollm2-135m-instruct"), tmp_path / "pruned", recipe,
                           calibration_texts=texts)
    scores, removed = manifest["pruning"]["layer_scores"], manifest["pruning"]["removed_layers"]
    print("block influence:", [round(score, 4) for score in scores], "removed:", removed)
    assert len(scores) == 30 and len(removed) == 6 and manifest["size"]["layers_after"] == 24
    # Measured, not positional: the first and last layers turn the stream most and stay.
    assert {0, 29}.isdisjoint(removed) and scores[0] == max(scores)
    assert manifest["size"]["weight_bytes_after"] < 0.9 * manifest["size"]["weight_bytes_before"]
