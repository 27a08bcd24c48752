"""Task types through the real engine on tiny-random-llama."""

import math

import pytest
import torch

from engines.hf import HFEngine
from harness.models import load_model
from tasks.evaluate import evaluate_task
from tasks.suite import load_suite


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOMAINBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield load_model("tiny-random-llama", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def tiny():
    return {task.name: task for task in load_suite("tiny").tasks}


def direct_logprob(loaded, text):
    """Sum of log-probs of every token of `text` from one forward pass over [BOS] + tokens."""
    tokens = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[loaded.tokenizer.bos_token_id, *tokens]])
    with torch.no_grad():
        logprobs = loaded.model(ids).logits.float().log_softmax(-1)
    return logprobs[0, :-1].gather(-1, ids[0, 1:, None]).sum().item(), len(tokens)


def test_perplexity_task_equals_a_direct_forward_pass_when_texts_fit(loaded, tiny):
    task = tiny["manpage-perplexity"]
    result = evaluate_task(task, HFEngine.from_loaded(loaded, progress=False), progress=False)
    total_logprob = total_tokens = 0
    for record, example in zip(result.records, task.examples["test"]):
        logprob, n_tokens = direct_logprob(loaded, example["text"])
        assert record.scores["logprob"] == pytest.approx(logprob, rel=1e-5)
        assert record.scores["n_tokens"] == n_tokens
        assert record.scores["n_bytes"] == len(example["text"].encode("utf-8"))
        total_logprob += logprob
        total_tokens += n_tokens
    assert result.metrics["token_perplexity"].value == pytest.approx(math.exp(-total_logprob / total_tokens), rel=1e-5)


def test_perplexity_with_a_short_window_scores_every_token_once(loaded, tiny):
    task = tiny["manpage-perplexity"]
    short = evaluate_task(task, HFEngine.from_loaded(loaded, max_length=8, progress=False), progress=False)
    for record, example in zip(short.records, task.examples["test"]):
        _, n_tokens = direct_logprob(loaded, example["text"])
        assert n_tokens > 8  # the text really is cut into windows
        assert record.scores["n_tokens"] == n_tokens
        assert math.isfinite(record.scores["logprob"]) and record.scores["logprob"] < 0


def test_results_do_not_depend_on_batch_size(loaded, tiny):
    small = HFEngine.from_loaded(loaded, max_batch_tokens=257, max_generation_batch=2, progress=False)
    large = HFEngine.from_loaded(loaded, max_batch_tokens=16384, progress=False)
    for task in tiny.values():
        a = evaluate_task(task, small, limit=3, progress=False)
        b = evaluate_task(task, large, limit=3, progress=False)
        assert [r.prediction for r in a.records] == [r.prediction for r in b.records], task.name
        for name in a.metrics:
            assert a.metrics[name].value == pytest.approx(b.metrics[name].value, rel=1e-4, abs=1e-6), (task.name, name)
