"""Micro-batches as tensors: right-padded rows, or several examples packed into each row.

Packing removes padding waste without changing what is learned. Each example keeps its own
positions (they restart at 0) and transformers turns restarting `position_ids` with no
attention mask into a block-causal mask (masking_utils.find_packed_sequence_indices), so no
token attends across examples; the first label of each packed example is dropped, because in
its own row nothing predicts it. The loss, its token count and (up to float rounding) the
gradients equal those of the padded batch: tests/test_tuning_packing.py holds it to that.

Models whose adapter injects virtual tokens or past key values (prefix, prompt tuning) build
masks of their own; they are never packed (`packable`).
"""

from __future__ import annotations

import torch

from tuning.loss import IGNORE_INDEX


def collate(examples: list[dict], pad_id: int, device) -> dict:
    """Right-padded tensors; padding is masked out of attention and labels."""
    length = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids.to(device), "labels": labels.to(device), "attention_mask": attention_mask.to(device)}


def packed_collate(examples: list[dict], pad_id: int, device) -> dict:
    """The examples packed into as few rows as fit the longest of them (first-fit decreasing).

    `attention_mask` marks real tokens for counting only; the model gets `position_ids` instead.
    """
    width = max(len(example["input_ids"]) for example in examples)
    rows = _first_fit_decreasing(examples, width)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    real = torch.zeros((len(rows), width), dtype=torch.long)
    for row, members in enumerate(rows):
        start = 0
        for example in members:
            n = len(example["input_ids"])
            input_ids[row, start:start + n] = torch.tensor(example["input_ids"])
            labels[row, start + 1:start + n] = torch.tensor(example["labels"][1:])
            position_ids[row, start:start + n] = torch.arange(n)
            real[row, start:start + n] = 1
            start += n
        # The padding tail is one more segment of its own, so it never joins the last example.
        position_ids[row, start:] = torch.arange(width - start)
    return {"input_ids": input_ids.to(device), "labels": labels.to(device),
            "position_ids": position_ids.to(device), "attention_mask": real.to(device)}


def model_inputs(batch: dict) -> dict:
    """What the model's forward takes from a batch of either kind."""
    if "position_ids" in batch:
        return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "attention_mask": None}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def packable(model) -> bool:
    """Whether packed rows mean the same to this model as padded ones (not for prefix or prompt tuning)."""
    config = getattr(model, "peft_config", None)
    if config:
        return not any(getattr(adapter, "is_prompt_learning", False) for adapter in config.values())
    return True


def _first_fit_decreasing(examples: list[dict], capacity: int) -> list[list[dict]]:
    rows: list[list[dict]] = []
    room: list[int] = []
    for example in sorted(examples, key=lambda e: -len(e["input_ids"])):
        n = len(example["input_ids"])
        slot = next((i for i, free in enumerate(room) if free >= n), None)
        if slot is None:
            rows.append([example])
            room.append(capacity - n)
        else:
            rows[slot].append(example)
            room[slot] -= n
    return rows
