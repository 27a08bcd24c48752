"""How text becomes token ids for scoring and for training: one rule each, shared by every engine and tuning.

- The first token is conditioned on a prefix token: BOS, else EOS (lm-evaluation-harness's rule).
- A (context, continuation) pair is split the lm-evaluation-harness way: trailing whitespace of the
  context moves to the continuation, the pair is encoded whole and cut where the context's tokens
  end, so the continuation's first token is the one the model really sees after that context.
Training data (tuning/data.py) uses the same two rules as evaluation, so a fine-tuned model is
trained on exactly the token boundaries it is scored on.
"""

from __future__ import annotations

from harness.errors import DomainbenchError


def prefix_token_id(tokenizer) -> int:
    """BOS, else EOS: the token every scored or trained sequence starts from."""
    if tokenizer.bos_token_id is not None:
        return tokenizer.bos_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    raise DomainbenchError("tokenizer has neither a BOS nor an EOS token to condition the first token on")


def count_tokens(tokenizer, texts: str | list[str]) -> int:
    """How many tokens `texts` (one text, or all of several) are, without the tokenizer's special tokens."""
    return sum(map(len, encode(tokenizer, [texts] if isinstance(texts, str) else texts)))


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without the tokenizer's own special tokens (the prefix rule adds one)."""
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def split_pair(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace to the front of the continuation."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def encode_pairs(tokenizer, pairs: list[tuple[str, str]]) -> tuple[list[list[int]], list[list[int]]]:
    """Context ids and continuation ids of each pair, split as the module docstring says."""
    split = [split_pair(context, continuation) for context, continuation in pairs]
    context_ids = encode(tokenizer, [context for context, _ in split])
    whole_ids = encode(tokenizer, [context + continuation for context, continuation in split])
    return context_ids, [whole[len(ctx):] for ctx, whole in zip(context_ids, whole_ids)]


def with_prefix(prefix_id: int, ids: list[int]) -> list[int]:
    """`ids` opened by the prefix token, unless they already open with it (a chat template may add it)."""
    if ids and ids[0] == prefix_id:
        return ids
    return [prefix_id, *ids]


def chat_prompt(tokenizer, user_text: str) -> str:
    """`user_text` as one user turn in the tokenizer's chat template, or unchanged if it has none."""
    if not getattr(tokenizer, "chat_template", None):
        return user_text
    return tokenizer.apply_chat_template([{"role": "user", "content": user_text}], tokenize=False,
                                         add_generation_prompt=True)
