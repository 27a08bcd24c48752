"""One rule for prefix tokens and context/continuation splits, shared by the engines and training data."""

from __future__ import annotations

import pytest

from engines.hf import HFEngine
from engines.tokens import encode_pairs, prefix_token_id, split_pair
from harness.errors import DomainbenchError
from harness.requests import LoglikelihoodRequest
from tuning.data import sft_examples


def test_trailing_whitespace_moves_to_the_continuation():
    assert split_pair("Answer:\n ", "EINTR") == ("Answer:", "\n EINTR")
    assert split_pair("Answer:", " EINTR") == ("Answer:", " EINTR")


def test_training_examples_split_exactly_where_the_engine_scores(tiny_model, tiny_tokenizer):
    pairs = [("Question: which errno?\nAnswer:\n", "EINTR"), ("Label: ", "network"), ("", "text only")]
    engine = HFEngine(tiny_model, tiny_tokenizer)
    contexts, continuations = engine._encode_pairs([LoglikelihoodRequest(c, x) for c, x in pairs])
    assert (contexts, continuations) == encode_pairs(tiny_tokenizer, pairs)
    for example, context, continuation in zip(sft_examples(pairs, tiny_tokenizer, 64), contexts, continuations):
        ids = example["input_ids"]
        assert ids == [prefix_token_id(tiny_tokenizer), *context, *continuation, tiny_tokenizer.eos_token_id]
        assert [i for i, label in zip(ids, example["labels"]) if label != -100] == [*continuation,
                                                                                   tiny_tokenizer.eos_token_id]


def test_a_tokenizer_without_bos_or_eos_is_refused(tiny_tokenizer):
    class Bare:
        bos_token_id = None
        eos_token_id = None

    assert prefix_token_id(tiny_tokenizer) in (tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id)
    with pytest.raises(DomainbenchError, match="neither a BOS nor an EOS"):
        prefix_token_id(Bare())
