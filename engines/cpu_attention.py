"""Attention for a bf16 (or fp16) model on a CPU: torch's SDPA, except for one-token decoding steps.

torch 2.13's CPU flash-attention kernel is slow for a single query token in reduced precision:
one decoding step of 16 rows over 500 cached tokens (9 query heads, 3 key/value heads, 64 dims)
takes 5.3 ms in bf16 against 0.49 ms in fp32 on a 2-core AVX-512 BF16 CPU (2026-12-01); written
as two small matmuls around a float32 softmax it takes 0.34 ms. Summed over 30 layers that is
most of a decoding step. Prefill and scoring (many query tokens) keep SDPA, which is fast there.
"""

from __future__ import annotations

import math

import torch

NAME = "domainbench_cpu_sdpa"


def use_decode_attention(model) -> bool:
    """Route `model`'s attention through `attention` when it runs SDPA on a CPU in reduced precision.

    Returns whether it did; a model with another attention implementation is left alone.
    """
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", NAME):
        return False
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.device.type != "cpu" or parameter.dtype not in (torch.bfloat16, torch.float16):
        return False
    _register()
    if config._attn_implementation != NAME:
        model.set_attn_implementation(NAME)
    return True


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
              **kwargs):
    """SDPA's contract (query [B, H, Q, D], key/value [B, KVH, K, D] -> [B, Q, H, D], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    special = dropout or kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None
    if query.shape[2] != 1 or query.device.type != "cpu" or query.dtype == torch.float32 or special:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    # Query head h reads key/value head h // (heads // kv_heads), as repeat_kv would have it.
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * (scaling or 1.0 / math.sqrt(dim))
    if attention_mask is not None:  # [B, 1, 1, K]: bool (True attends) or additive
        mask = attention_mask[:, :, -1:, :]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    probabilities = torch.softmax(scores, dim=-1).to(value.dtype)
    output = torch.matmul(probabilities, value)  # [B, KVH, groups, D]
    return output.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
