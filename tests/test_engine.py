"""The engine's contract: exact scores, independent of batching, in request order."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engines.hf import HFEngine
from engines.scoring import logprobs_from_logits, rolling_windows, vocab_tiled_logprobs
from engines.shared_context import shared_context_rows
from engines.stops import cut_at_stop
from harness.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest

SENTENCES = [
    "The open() system call opens the file specified by pathname.",
    "On error, -1 is returned",
    "Paris is the capital of France.",
    "EEXIST",
    "The quick brown fox jumps over the lazy dog, and the rename() function renames a file.",
]
PAIRS = [
    LoglikelihoodRequest("Question: Which header declares openat()? Answer:", " <fcntl.h>"),
    LoglikelihoodRequest("The rename() function", " renames a file"),
    LoglikelihoodRequest("", "The quick brown fox"),
    LoglikelihoodRequest("On error, ", "-1 is returned and errno is set."),
    LoglikelihoodRequest("Classify the text: ", "positive"),
    LoglikelihoodRequest("A long context " * 12, " EINVAL"),
]


def direct_loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """Reference: one unpadded forward over [BOS, context, continuation], full logits."""
    context_ids = tokenizer(context.rstrip(), add_special_tokens=False)["input_ids"] if context.rstrip() else []
    spaces = context[len(context.rstrip()):]
    whole = tokenizer(context.rstrip() + spaces + continuation, add_special_tokens=False)["input_ids"]
    continuation_ids = whole[len(context_ids):]
    ids = torch.tensor([[tokenizer.bos_token_id, *whole]])
    with torch.no_grad():
        logprobs = model(input_ids=ids).logits.log_softmax(-1)[0]
    n = len(continuation_ids)
    positions = torch.arange(ids.shape[1] - 1 - n, ids.shape[1] - 1)
    return float(logprobs[positions, ids[0, positions + 1]].sum())


@pytest.fixture()
def engine(tiny_model, tiny_tokenizer):
    return HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)


def test_loglikelihood_equals_direct_forward(engine, tiny_model, tiny_tokenizer):
    results = engine.loglikelihood(PAIRS)
    for request, result in zip(PAIRS, results):
        expected = direct_loglikelihood(tiny_model, tiny_tokenizer, request.context, request.continuation)
        assert result.logprob == pytest.approx(expected, abs=1e-4)


# The engine never lets a batch budget fall below one full row (max_length + 1 tokens). With a
# 16-token context every scoring row here is longer than half that floor, so `one_by_one` really
# runs one row per forward pass while `all_at_once` pads every row into a single pass.
SHORT_CONTEXT = 16


@pytest.fixture()
def one_by_one(tiny_model, tiny_tokenizer):
    return HFEngine(tiny_model, tiny_tokenizer, device="cpu", max_length=SHORT_CONTEXT, max_batch_tokens=1,
                  progress=False)


@pytest.fixture()
def all_at_once(tiny_model, tiny_tokenizer):
    return HFEngine(tiny_model, tiny_tokenizer, device="cpu", max_length=SHORT_CONTEXT, max_batch_tokens=10_000,
                  progress=False)


def forward_batches(engine, score):
    """`score(engine)`'s results and the (rows, tokens) shape of each forward pass it made."""
    engine.loglikelihood_rolling([RollingRequest("warm up")])  # the engine's one-off head check is not scoring
    shapes = []
    embeddings = engine.model.get_input_embeddings()
    hook = embeddings.register_forward_hook(lambda module, args, output: shapes.append(tuple(args[0].shape)))
    try:
        return score(engine), shapes
    finally:
        hook.remove()


def test_batched_scores_equal_unbatched(one_by_one, all_at_once):
    single, single_batches = forward_batches(one_by_one, lambda engine: engine.loglikelihood(PAIRS))
    batched, batched_batches = forward_batches(all_at_once, lambda engine: engine.loglikelihood(PAIRS))
    assert [rows for rows, _ in batched_batches] == [len(PAIRS)]
    assert len(single_batches) > len(batched_batches)
    for a, b in zip(single, batched):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert (a.is_greedy, a.n_tokens) == (b.is_greedy, b.n_tokens)


def test_rolling_scores_do_not_depend_on_batching(one_by_one, all_at_once, tiny_tokenizer):
    texts = [*SENTENCES, " ".join(SENTENCES)]  # the last spans several windows
    n_rows = sum(1 for ids in tiny_tokenizer(texts, add_special_tokens=False)["input_ids"]
                 for _ in rolling_windows(ids, tiny_tokenizer.bos_token_id, SHORT_CONTEXT, SHORT_CONTEXT))
    requests = [RollingRequest(text) for text in texts]
    single, single_batches = forward_batches(one_by_one, lambda engine: engine.loglikelihood_rolling(requests))
    batched, batched_batches = forward_batches(all_at_once, lambda engine: engine.loglikelihood_rolling(requests))
    assert [rows for rows, _ in single_batches] == [1] * n_rows
    assert [rows for rows, _ in batched_batches] == [n_rows]
    for a, b in zip(single, batched):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.n_tokens == b.n_tokens


def test_results_come_back_in_request_order(engine):
    forward = engine.loglikelihood(PAIRS)
    backward = engine.loglikelihood(PAIRS[::-1])
    assert [r.logprob for r in forward] == pytest.approx([r.logprob for r in backward[::-1]], abs=1e-5)


def test_head_only_scoring_equals_full_logits_path(tiny_model, tiny_tokenizer):
    fast = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    assert fast._uses_head_only_scoring()
    exact = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    exact._head_only_scoring = False
    for a, b in zip(fast.loglikelihood(PAIRS), exact.loglikelihood(PAIRS)):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.is_greedy == b.is_greedy


@pytest.mark.parametrize("bias", [False, True])
def test_vocab_tiled_logprobs_equal_whole_logits(bias):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 37, bias=bias)
    hidden = torch.randn(11, 16)
    with torch.no_grad():
        # Rows 3 and 12 (different tiles) tie for the top logit of hidden row 0: argmax takes the first.
        head.weight[3] = head.weight[12] = hidden[0] * 10
        if bias:
            head.bias[3] = head.bias[12]
        logits = head(hidden)
        targets = torch.randint(0, 37, (11,))
        targets[0], targets[1] = 3, logits[1].argmax()
        expected = logprobs_from_logits(logits, targets, True)
        got = vocab_tiled_logprobs(hidden, head, targets, True, tile=5)
        tie_loser = vocab_tiled_logprobs(hidden[:1], head, torch.tensor([12]), True, tile=5)
    assert torch.allclose(got[0], expected[0], atol=1e-5)
    assert torch.equal(got[1], expected[1]) and bool(got[1][0]) and bool(got[1][1])
    assert not bool(tie_loser[1][0])


def test_greedy_flag_marks_the_argmax_continuation(engine, tiny_model, tiny_tokenizer):
    context = "The open() system call"
    ids = torch.tensor([[tiny_tokenizer.bos_token_id, *tiny_tokenizer(context, add_special_tokens=False)["input_ids"]]])
    with torch.no_grad():
        argmax = int(tiny_model(input_ids=ids).logits[0, -1].argmax())
    greedy_text = tiny_tokenizer.decode([argmax])
    wrong_id = (argmax + 1) % len(tiny_tokenizer)
    results = engine.loglikelihood([LoglikelihoodRequest(context, greedy_text),
                                    LoglikelihoodRequest(context, tiny_tokenizer.decode([wrong_id]))])
    assert results[0].is_greedy
    assert not results[1].is_greedy


def test_rolling_equals_full_forward_when_text_fits(engine, tiny_model, tiny_tokenizer):
    for text, result in zip(SENTENCES, engine.loglikelihood_rolling([RollingRequest(s) for s in SENTENCES])):
        assert result.logprob == pytest.approx(direct_loglikelihood(tiny_model, tiny_tokenizer, "", text), abs=1e-4)
        assert result.n_tokens == len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("stride", [4, 7, 16])
def test_rolling_with_stride_scores_each_token_once_with_its_window_context(tiny_model, tiny_tokenizer, stride):
    max_length = 16
    engine = HFEngine(tiny_model, tiny_tokenizer, device="cpu", max_length=max_length, progress=False)
    text = " ".join(SENTENCES)
    tokens = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    expected = 0.0
    for row in rolling_windows(tokens, tiny_tokenizer.bos_token_id, max_length, stride):
        ids = torch.tensor([row.tokens])
        with torch.no_grad():
            logprobs = tiny_model(input_ids=ids[:, :-1]).logits.log_softmax(-1)[0]
        targets = ids[0, 1:]
        expected += float(logprobs[-row.n_scored:].gather(-1, targets[-row.n_scored:, None]).sum())
    result = engine.loglikelihood_rolling([RollingRequest(text)], stride=stride)[0]
    assert result.n_tokens == len(tokens)
    assert result.logprob == pytest.approx(expected, abs=1e-3)


@settings(max_examples=200, deadline=None)
@given(n_tokens=st.integers(0, 80), max_length=st.integers(1, 20), data=st.data())
def test_rolling_windows_cover_every_token_exactly_once(n_tokens, max_length, data):
    stride = data.draw(st.integers(1, max_length))
    tokens = list(range(100, 100 + n_tokens))
    covered = []
    for row in rolling_windows(tokens, 0, max_length, stride):
        assert 1 <= len(row.tokens) - 1 <= max_length
        assert 1 <= row.n_scored <= len(row.tokens) - 1
        covered.extend(row.tokens[-row.n_scored:])
    assert covered == tokens


def test_generation_is_greedy_batch_independent_and_stops(tiny_model, tiny_tokenizer):
    requests = [GenerationRequest(s, stop=("\n",), max_new_tokens=12) for s in SENTENCES]
    requests.append(GenerationRequest("Summary:", stop=(), max_new_tokens=5))
    single = HFEngine(tiny_model, tiny_tokenizer, device="cpu", max_generation_batch=1, progress=False)
    batched = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    outputs = batched.generate(requests)
    assert single.generate(requests) == outputs
    assert all("\n" not in text for text in outputs[:-1])


def test_generation_matches_hf_generate_unpadded(tiny_model, tiny_tokenizer):
    engine = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    prompt = "The rename() function"
    ids = torch.tensor([[tiny_tokenizer.bos_token_id, *tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]]])
    with torch.no_grad():
        out = tiny_model.generate(input_ids=ids, max_new_tokens=8, do_sample=False,
                                  pad_token_id=tiny_tokenizer.pad_token_id)
    expected = tiny_tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert engine.generate([GenerationRequest(prompt, max_new_tokens=8)]) == [expected]


def test_cut_at_stop_uses_the_earliest_stop():
    assert cut_at_stop("abc\ndef. ghi", ("\n", ".")) == "abc"
    assert cut_at_stop("abc", ("\n",)) == "abc"
    assert cut_at_stop("abc", ()) == "abc"


def test_chat_prompt_uses_the_template(engine):
    assert engine.chat_prompt("hi") == "<|user|>\nhi\n<|assistant|>\n"


def test_stop_strings_apply_once_the_answer_has_begun():
    assert cut_at_stop("\n\nEFAULT\nmore", ("\n",)) == "\n\nEFAULT"
    assert cut_at_stop("EFAULT\n", ("\n",)) == "EFAULT"
    assert cut_at_stop("  \n", ("\n",)) == "  \n"  # nothing begun, nothing cut: the prediction is empty text
    assert cut_at_stop("a\n\nb", ("\n\n", "b")) == "a"


def test_generation_stops_at_the_first_stop_after_the_answer_begins(tiny_model, tiny_tokenizer):
    engine = HFEngine(tiny_model, tiny_tokenizer, progress=False)
    free = engine.generate([GenerationRequest("The file", stop=(), max_new_tokens=24)])[0]
    stop = next((ch for ch in free.lstrip()[1:] if not ch.isspace()), None)
    assert stop is not None, free
    stopped = engine.generate([GenerationRequest("The file", stop=(stop,), max_new_tokens=24)])[0]
    assert stopped == cut_at_stop(free, (stop,)) and len(stopped) < len(free)


MULTIPLE_CHOICE = [LoglikelihoodRequest(context, label)
                   for context in ("Manual page excerpt:\nThe fd is closed.\nThis page documents a",
                                   "Question: Which errno means the file exists? Answer:", "")
                   for label in (" system call", " library function", " special file", " EEXIST", "x")]


def test_multiple_choice_shares_its_context_and_scores_like_direct_forwards(tiny_model, tiny_tokenizer):
    engine = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    requests = [*MULTIPLE_CHOICE, LoglikelihoodRequest("A lone context", " with one continuation")]
    shared_rows = []
    original = engine._score_shared_batch

    def recording(rows):
        shared_rows.extend(rows)
        return original(rows)

    engine._score_shared_batch = recording
    results = engine.loglikelihood(requests)
    assert sorted(len(row.members) for row in shared_rows) == [5, 5, 5]  # each context computed once
    for request, result in zip(requests, results):
        expected = direct_loglikelihood(tiny_model, tiny_tokenizer, request.context, request.continuation)
        assert result.logprob == pytest.approx(expected, abs=1e-4), request
    contexts = [[1, 5, 6, 7]] * 3 + [[1, 9]]
    continuations = [[2, 3], [4], [8, 8, 8], [2]]
    rows, alone = shared_context_rows(contexts, continuations, max_length=10)
    assert [row.members for row in rows] == [(0, 1, 2)] and alone == [3]  # a lone context gains nothing
    rows, alone = shared_context_rows(contexts, continuations, max_length=9)
    assert rows == [] and alone == [0, 1, 2, 3]  # a row longer than the model's context is not shared


def test_shared_context_scores_do_not_depend_on_batching(tiny_model, tiny_tokenizer):
    one = HFEngine(tiny_model, tiny_tokenizer, device="cpu", max_length=64, max_batch_tokens=1, progress=False)
    many = HFEngine(tiny_model, tiny_tokenizer, device="cpu", max_length=64, max_batch_tokens=10_000, progress=False)
    for a, b in zip(one.loglikelihood(MULTIPLE_CHOICE), many.loglikelihood(MULTIPLE_CHOICE)):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4) and a.is_greedy == b.is_greedy
