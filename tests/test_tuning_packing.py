"""Packed micro-batches mean exactly what padded ones mean: same loss, same count, same gradients."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from harness.tiny import build_tiny_model
from tuning.batches import collate, packable, packed_collate
from tuning.loop import causal_lm_loss
from tuning.loss import IGNORE_INDEX


def _examples(tokenizer, lengths: list[int], *, seed: int = 0) -> list[dict]:
    """SFT-like examples (loss on the tail) and one CPT-like one (loss everywhere)."""
    rng = random.Random(seed)
    examples = []
    for index, n in enumerate(lengths):
        ids = [tokenizer.bos_token_id, *(rng.randrange(5, tokenizer.vocab_size) for _ in range(n - 1))]
        labels = list(ids) if index == 0 else [IGNORE_INDEX] * (n // 2) + ids[n // 2:]
        examples.append({"input_ids": ids, "labels": labels})
    return examples


@pytest.fixture
def model(tiny_tokenizer):
    return build_tiny_model(tiny_tokenizer, seed=3).train()


def test_packing_fills_rows_and_keeps_every_token(tiny_tokenizer):
    examples = _examples(tiny_tokenizer, [40, 12, 9, 25, 14, 30])
    batch = packed_collate(examples, tiny_tokenizer.pad_token_id, "cpu")
    padded = collate(examples, tiny_tokenizer.pad_token_id, "cpu")
    assert batch["input_ids"].shape[1] == padded["input_ids"].shape[1] == 40
    assert batch["input_ids"].shape[0] < len(examples)
    assert int(batch["attention_mask"].sum()) == int(padded["attention_mask"].sum()) == sum([40, 12, 9, 25, 14, 30])
    # Positions restart at every example, so each starts at 0.
    assert int((batch["position_ids"][batch["attention_mask"].bool()] == 0).sum()) == len(examples)


def test_packed_loss_and_gradients_equal_the_padded_ones(model, tiny_tokenizer):
    examples = _examples(tiny_tokenizer, [48, 10, 17, 21, 8, 33, 12])
    twin = copy.deepcopy(model)
    padded_loss, padded_n = causal_lm_loss(model, collate(examples, tiny_tokenizer.pad_token_id, "cpu"), chunk_size=64)
    packed_loss, packed_n = causal_lm_loss(twin, packed_collate(examples, tiny_tokenizer.pad_token_id, "cpu"),
                                           chunk_size=64)
    assert packed_n == padded_n
    assert torch.allclose(packed_loss, padded_loss, rtol=1e-5)
    padded_loss.backward()
    packed_loss.backward()
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name


def test_a_token_never_sees_another_example(model, tiny_tokenizer):
    """Changing the example packed before it leaves an example's loss unchanged."""
    anchor, first, second = _examples(tiny_tokenizer, [35, 20, 15], seed=1)
    changed = dict(first, input_ids=[first["input_ids"][0], *reversed(first["input_ids"][1:])])
    unlabelled = lambda e: {**e, "labels": [IGNORE_INDEX] * len(e["labels"])}  # noqa: E731
    model.eval()
    with torch.no_grad():
        batches = [packed_collate([unlabelled(anchor), unlabelled(before), second], 0, "cpu")
                   for before in (first, changed)]
        assert batches[0]["input_ids"].shape[0] == 2          # first and second share a row
        assert not torch.equal(batches[0]["input_ids"], batches[1]["input_ids"])
        losses = [causal_lm_loss(model, batch, chunk_size=64)[0] for batch in batches]
    assert torch.allclose(losses[0], losses[1], rtol=1e-6)


def test_prompt_learning_adapters_are_not_packed(tiny_tokenizer):
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model

    prefix = get_peft_model(build_tiny_model(tiny_tokenizer), PrefixTuningConfig(task_type="CAUSAL_LM",
                                                                                 num_virtual_tokens=4))
    lora = get_peft_model(build_tiny_model(tiny_tokenizer), LoraConfig(task_type="CAUSAL_LM", r=2,
                                                                       target_modules=["q_proj"]))
    assert not packable(prefix)
    assert packable(lora) and packable(build_tiny_model(tiny_tokenizer))
