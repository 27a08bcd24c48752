"""Greedy decoding on a CPU: each prompt prefilled alone, the batch decoded together.

`model.generate` over a left-padded batch spends most of a CPU's time in the prefill, computing
padding under a masked attention: 16 man-page prompts of 110-293 tokens ran at 715 real tokens/s
there, against ~1,000 for the same prompts one at a time with the causal kernel (SmolLM2-135M,
bf16, 2-core AVX-512 BF16 CPU, 2026-12-01). Here each prompt is prefilled alone, the key/value
caches are left-padded into one batch, and the batch decodes together; a row that finishes (a stop
string or EOS) leaves the batch, so the others no longer carry it.

It computes what greedy `generate` computes: positions count from each prompt's first token,
padding is masked, each new token is the argmax. Only models whose forward it can drive this way
take it (`can_decode`); the engine gives the rest to `generate`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
from transformers.generation.streamers import BaseStreamer

from engines.scoring import left_padded
from engines.stops import cut_at_stop
from harness.requests import TokenCallback

# Generation-config fields that make `generate` change the logits or the stopping rule; a model
# that sets any of them keeps `generate`, which honours them.
_LOGITS_CHANGING = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0,
                    "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None,
                    "forced_bos_token_id": None, "forced_eos_token_id": None, "min_length": 0,
                    "min_new_tokens": 0, "sequence_bias": None, "stop_strings": None}


def can_decode(model) -> bool:
    """Whether `greedy_generate` can drive `model`: a plain decoder-only LM with a dynamic cache."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False) or hasattr(model, "peft_config"):
        return False
    parameters = inspect.signature(model.forward).parameters
    if "logits_to_keep" not in parameters or _cache_argument(model) is None:
        return False
    generation = getattr(model, "generation_config", None)
    if generation is not None and any(getattr(generation, field, default) not in (default, None)
                                      for field, default in _LOGITS_CHANGING.items()):
        return False
    try:
        layers = DynamicCache(config=config).layers
    except (AttributeError, TypeError, ValueError, KeyError):
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


@torch.inference_mode()
def greedy_generate(model, prompts: list[list[int]], *, max_new_tokens: int, finished: Callable[[list[int]], bool],
                    prefill_tokens: int = 1024, on_token: TokenCallback | None = None) -> list[list[int]]:
    """The greedy new tokens of each prompt, up to `max_new_tokens`; a row stops once `finished(tokens)`.

    Prompts are prefilled in groups of consecutive prompts whose padded size fits `prefill_tokens`
    (long ones alone, without padding; short ones together), so pass them longest first.
    `on_token(prompt_index, token)` hears each new token as soon as it is chosen (a server streams them).
    """
    on_token = on_token or _ignore
    if max_new_tokens <= 0:
        return [[] for _ in prompts]
    device = next(model.parameters()).device
    cache_argument = _cache_argument(model)
    tokens, caches = [], []
    for group in _prefill_groups([len(p) for p in prompts], prefill_tokens):
        cache, logits = _prefill(model, [prompts[i] for i in group], device, cache_argument)
        for index, token in zip(group, logits.argmax(-1).tolist()):
            tokens.append([token])
            on_token(index, token)
        caches.append(cache)
    cache, mask = _left_padded_cache(caches, [len(p) for p in prompts], device, room=max_new_tokens)
    del caches
    rows = list(range(len(prompts)))  # batch position -> prompt index
    while True:
        keep = [b for b, row in enumerate(rows) if not finished(tokens[row]) and len(tokens[row]) < max_new_tokens]
        if not keep:
            return tokens
        if len(keep) < len(rows):
            cache.batch_select_indices(torch.tensor(keep, device=device))
            mask, rows = mask[keep], [rows[b] for b in keep]
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
        input_ids = torch.tensor([[tokens[row][-1]] for row in rows], device=device)
        positions = torch.tensor([[len(prompts[row]) + len(tokens[row]) - 1] for row in rows], device=device)
        # Always a mask: it hides the cache's reserved positions as well as the padding.
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                       use_cache=True, logits_to_keep=1, **{cache_argument: cache}).logits[:, -1]
        for row, token in zip(rows, logits.argmax(-1).tolist()):
            tokens[row].append(token)
            on_token(row, token)


def _ignore(index: int, token: int) -> None:
    pass


class TokenStreamer(BaseStreamer):
    """Hands `generate`'s new tokens to `on_token(row, token)` as each step chooses them.

    `generate` first puts the prompt (skipped), then one token per row per step; a row that has
    finished gets the pad token, which decodes to nothing.
    """

    def __init__(self, on_token: TokenCallback):
        self.on_token, self.prompt_seen = on_token, False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            self.on_token(row, token)

    def end(self) -> None:
        pass


def stop_rule(tokenizer, stops: tuple[str, ...], eos_ids: set[int]) -> Callable[[list[int]], bool]:
    """A row is finished at an EOS token or once `cut_at_stop` would cut its text (as `generate`'s criterion)."""
    def finished(tokens: list[int]) -> bool:
        if tokens and tokens[-1] in eos_ids:
            return True
        if not stops:
            return False
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        return cut_at_stop(text, stops) != text
    return finished


def eos_token_ids(model, tokenizer) -> set[int]:
    """The ids that end a sequence: the generation config's, as `generate` uses, else the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in eos} if isinstance(eos, (list, tuple)) else {int(eos)}


def _prefill_groups(lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive runs of prompt indices whose padded size (rows x longest) fits `budget`."""
    groups: list[list[int]] = []
    longest = 0
    for index, length in enumerate(lengths):
        if groups and max(longest, length) * (len(groups[-1]) + 1) <= budget:
            groups[-1].append(index)
            longest = max(longest, length)
        else:
            groups.append([index])
            longest = length
    return groups


def _prefill(model, prompts: list[list[int]], device, cache_argument: str):
    """A group of prompts through the model, left-padded (masked only when lengths differ).

    Returns its cache ([rows, heads, longest, dim] per layer) and each row's last-position logits.
    """
    input_ids, mask, positions = left_padded(prompts, 0, device)  # pad id 0: masked, never attended to
    padded = not bool(mask.all())
    cache = DynamicCache(config=model.config)
    # Without padding there is no mask, and attention takes the (faster) causal kernel.
    output = model(input_ids=input_ids, attention_mask=mask if padded else None,
                   position_ids=positions, use_cache=True, logits_to_keep=1, **{cache_argument: cache})
    return cache, output.logits[:, -1]


def _left_padded_cache(caches: list, lengths: list[int], device, *, room: int):
    """One batch cache from the groups' caches, every row left-padded to the longest prompt.

    Each layer keeps `room` free positions after the prompt, so decoding writes its keys and
    values in place rather than concatenating the whole cache at every step.
    """
    width = max(lengths)
    layers = []
    for layer in zip(*(cache.layers for cache in caches)):
        keys = torch.cat([F.pad(group.keys, (0, 0, width - group.keys.shape[-2], room)) for group in layer])
        values = torch.cat([F.pad(group.values, (0, 0, width - group.values.shape[-2], room)) for group in layer])
        layers.append(ReservedLayer(keys, values, length=width))
    mask = torch.zeros((len(lengths), width), dtype=torch.long, device=device)
    for row, length in enumerate(lengths):
        mask[row, width - length:] = 1
    return Cache(layers=layers), mask


class ReservedLayer(DynamicLayer):
    """A dynamic cache layer whose buffers have room for the tokens still to come.

    Each decoding step writes its token in place, and attention reads the whole buffer: the
    positions not yet written lie after the query, so the causal mask hides them (which is why the
    decoding loop always passes a mask). transformers' `DynamicLayer` concatenates instead, copying
    the whole cache at every step: 17% of a decoding step for SmolLM2-135M at 16 rows over ~500
    cached tokens (bf16, 2-core AVX-512 BF16 CPU, 2026-12-02). Views of the written part would not
    do: the CPU's batched matmul copies a strided view, which cost more than the concatenation.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, *, length: int):
        super().__init__()
        self.keys, self.values, self._length = keys, values, length
        self.device, self.is_initialized = keys.device, True

    def update(self, key_states, value_states, *args, **kwargs):
        end = self._length + key_states.shape[-2]
        if end > self.keys.shape[-2]:  # past the reserved room: grow, as DynamicLayer would
            more = end - self.keys.shape[-2]
            self.keys = F.pad(self.keys, (0, 0, 0, more))
            self.values = F.pad(self.values, (0, 0, 0, more))
        self.keys[:, :, self._length:end] = key_states
        self.values[:, :, self._length:end] = value_states
        self._length = end
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return max(self.keys.shape[-2], self._length + query_length), 0

    def get_seq_length(self) -> int:
        return self._length

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a reserved cache layer only decodes forward")


def _cache_argument(model) -> str | None:
    """The forward keyword that takes the cache: `cache` (transformers >= 5.x) or `past_key_values`."""
    parameters = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    return None
