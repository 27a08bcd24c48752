"""The training loop: reproducible, resumable to the same weights, guarded against NaN, early-stopping."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from harness.errors import DomainbenchError
from tuning.data import packed_sequences
from tuning.loop import (
    causal_lm_loss,
    compile_layers,
    train,
    transformer_layers,
    uncompile,
)
from tuning.recipe import load_recipe

# The dev loss before training takes 3 loss calls (6 dev examples, batches of 2); each step takes 2.
DEV_CALLS = 3
TEXT = "The open() system call opens the file specified by pathname. On error, errno is EINVAL. " * 40


@pytest.fixture
def examples(tiny_tokenizer):
    sequences = packed_sequences([TEXT, TEXT.upper()], tiny_tokenizer, seq_len=24)
    return sequences[:16], sequences[16:22]


def _config(**train):
    settings = {"max_steps": 6, "batch_size": 2, "grad_accum": 2, "warmup_steps": 1, "eval_every": 3,
                "checkpoint_every": 3, "learning_rate": 1e-2, "early_stopping_patience": 0, **train}
    return load_recipe("full", overrides={"train": settings}).train


def _run(model, examples, tiny_tokenizer, work_dir, config, **kwargs):
    return train(model, examples[0], examples[1], config, work_dir=work_dir,
                 pad_id=tiny_tokenizer.pad_token_id, **kwargs)


def test_same_seed_gives_the_same_loss_curve(tiny_model, tiny_tokenizer, examples, tmp_path):
    first = _run(copy.deepcopy(tiny_model).train(), examples, tiny_tokenizer, tmp_path / "a", _config())
    second = _run(copy.deepcopy(tiny_model).train(), examples, tiny_tokenizer, tmp_path / "b", _config())
    assert first.state.losses == second.state.losses
    assert len(first.state.losses) == 6 and first.state.losses[-1] < first.state.losses[0]
    assert first.state.dev_loss_before > first.state.best_dev_loss
    assert first.state.tokens_seen == 6 * 2 * 2 * 24 and first.tokens_per_second > 0


def test_resume_after_a_crash_matches_an_uninterrupted_run(tiny_model, tiny_tokenizer, examples, tmp_path):
    config = _config(checkpoint_every=2, eval_every=100)
    whole_model = copy.deepcopy(tiny_model).train()
    whole = _run(whole_model, examples, tiny_tokenizer, tmp_path / "whole", config)
    crashing_loss = _failing_after(DEV_CALLS + 2 * 3, config, KeyboardInterrupt)  # during step 4, after step 2's checkpoint
    with pytest.raises(KeyboardInterrupt):
        _run(copy.deepcopy(tiny_model).train(), examples, tiny_tokenizer, tmp_path / "resumed", config,
             loss_fn=crashing_loss)
    fresh = copy.deepcopy(tiny_model).train()  # a new process starts again from the base weights
    resumed = _run(fresh, examples, tiny_tokenizer, tmp_path / "resumed", config, resume=True)
    assert resumed.state.losses == whole.state.losses
    for (name, got), (_, want) in zip(sorted(fresh.state_dict().items()), sorted(whole_model.state_dict().items())):
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)


class PlantedCode:
    """What a hostile file in a shared cache holds: unpickling it calls os.mkdir (any call would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def test_a_checkpoint_is_read_without_pickle_so_a_planted_file_runs_no_code(tiny_model, tiny_tokenizer, examples,
                                                                          tmp_path):
    checkpoints = tmp_path / "work" / "checkpoints"
    (checkpoints / "step-0000002").mkdir(parents=True)
    (checkpoints / "latest").write_text("step-0000002")
    marker = tmp_path / "code-ran"
    torch.save({"weights": PlantedCode(marker)}, checkpoints / "step-0000002" / "checkpoint.pt")
    with pytest.raises(DomainbenchError, match="holds more than tensors and plain values"):
        _run(copy.deepcopy(tiny_model).train(), examples, tiny_tokenizer, tmp_path / "work", _config(), resume=True)
    assert not marker.exists()


def _failing_after(calls: int, config, failure):
    """A loss function that works for `calls` calls, then raises `failure` (or returns NaN for None)."""
    count = {"n": 0}

    def loss_fn(model, batch):
        count["n"] += 1
        loss, n = causal_lm_loss(model, batch, chunk_size=config.loss_chunk_size)
        if count["n"] <= calls:
            return loss, n
        if failure is None:
            return loss * float("nan"), n
        raise failure

    return loss_fn


def test_nan_loss_stops_with_the_step_and_last_good_checkpoint(tiny_model, tiny_tokenizer, examples, tmp_path):
    config = _config(checkpoint_every=2, eval_every=100)
    exploding_loss = _failing_after(DEV_CALLS + 2 * 3, config, None)
    with pytest.raises(DomainbenchError, match=r"loss became nan at step 4; .*last good checkpoint: .*step-0000002"):
        _run(copy.deepcopy(tiny_model).train(), examples, tiny_tokenizer, tmp_path / "nan", config,
             loss_fn=exploding_loss)


def test_early_stopping_keeps_the_best_dev_weights(tiny_model, tiny_tokenizer, examples, tmp_path):
    config = _config(max_steps=40, eval_every=1, early_stopping_patience=2, learning_rate=0.3, warmup_steps=0,
                     schedule="constant_with_warmup")
    result = _run(copy.deepcopy(tiny_model).train(), examples, tiny_tokenizer, tmp_path / "stop", config)
    assert result.state.stopped_early and result.state.step < 40
    assert result.state.best_dev_loss == min(loss for _, loss in result.state.dev_losses)


def test_compiled_layers_train_as_the_eager_ones_and_come_back_eager(tiny_model, tiny_tokenizer, examples, tmp_path):
    eager_model, compiled_model = copy.deepcopy(tiny_model).train(), copy.deepcopy(tiny_model).train()
    config = _config(max_steps=3, eval_every=3, checkpoint_every=3, mixed_precision="fp32")
    eager = _run(eager_model, examples, tiny_tokenizer, tmp_path / "eager", config)
    compiled = _run(compiled_model, examples, tiny_tokenizer, tmp_path / "compiled",
                    dataclasses.replace(config, compile=True))
    assert compiled.state.losses == pytest.approx(eager.state.losses, rel=1e-4)
    assert list(compiled_model.state_dict()) == list(eager_model.state_dict())  # compiled in place: same keys
    assert all(layer._compiled_call_impl is None for layer in transformer_layers(compiled_model))
    layers = compile_layers(compiled_model)  # what the compiled run trained with
    assert layers and all(layer._compiled_call_impl is not None for layer in layers)
    uncompile(layers)
