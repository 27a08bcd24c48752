"""Causal-LM losses computed from hidden states, a chunk of positions at a time.

With a 49k vocabulary the [batch, positions, vocab] logits are the largest tensor of a training
step (a batch of 8 x 512 tokens holds 0.8 GB of fp32 logits, plus as much again for their
gradient). Here the output projection and the cross-entropy run over chunks of positions, and only
positions that carry a label are projected at all, so full logits never exist. On CUDA, Liger's
fused linear cross-entropy kernel does the same when it is installed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
DEFAULT_CHUNK_SIZE = 1024


def hidden_and_targets(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden states that predict a labelled token, and those tokens (causal shift applied).

    hidden: [B, T, H], labels: [B, T] with IGNORE_INDEX where no loss is taken.
    """
    hidden, targets = hidden[:, :-1], labels[:, 1:]
    keep = targets != IGNORE_INDEX
    return hidden[keep], targets[keep]


def causal_lm_loss_sum(hidden: torch.Tensor, lm_head: torch.nn.Module, labels: torch.Tensor, *,
                       chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled positions, and how many there were.

    Equals `F.cross_entropy(lm_head(hidden)[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
    reduction="sum")`, value and gradients, without materialising the full logits.
    """
    inputs, targets = hidden_and_targets(hidden, labels)
    n_tokens = int(targets.numel())
    if n_tokens == 0:
        return hidden.sum() * 0.0, 0
    if _plain_linear(lm_head) and inputs.is_cuda and _liger_loss() is not None:
        return _liger_loss()(lm_head.weight, inputs, targets, lm_head.bias), n_tokens
    if _plain_linear(lm_head):
        return _ChunkedLinearCrossEntropy.apply(inputs, lm_head.weight, lm_head.bias, targets, chunk_size), n_tokens
    # An adapted output layer (LoRA on lm_head): recompute each chunk's logits in the backward pass.
    total = inputs.new_zeros((), dtype=torch.float32)
    for start in range(0, n_tokens, chunk_size):
        total = total + checkpoint(_module_ce_sum, lm_head, inputs[start:start + chunk_size],
                                   targets[start:start + chunk_size], use_reentrant=False)
    return total, n_tokens


def distillation_loss_sums(student_hidden: torch.Tensor, student_head: torch.nn.Module,
                           teacher_hidden: torch.Tensor, teacher_head: torch.nn.Module, labels: torch.Tensor, *,
                           temperature: float, chunk_size: int = DEFAULT_CHUNK_SIZE
                           ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(KL(teacher || student) at temperature T times T², hard-label cross-entropy, n) summed over labelled positions.

    The T² factor keeps the soft-target gradients on the scale of the hard-label ones (Hinton et al.).
    Each chunk's logits are recomputed in the backward pass instead of being kept.
    """
    student_inputs, targets = hidden_and_targets(student_hidden, labels)
    teacher_inputs, _ = hidden_and_targets(teacher_hidden, labels)
    n_tokens = int(targets.numel())
    kl_total = student_inputs.new_zeros((), dtype=torch.float32)
    ce_total = student_inputs.new_zeros((), dtype=torch.float32)
    for start in range(0, n_tokens, chunk_size):
        end = start + chunk_size
        with torch.no_grad():
            teacher_logits = teacher_head(teacher_inputs[start:end]).float()
        kl, ce = checkpoint(_distill_chunk, student_head, student_inputs[start:end], teacher_logits,
                            targets[start:end], temperature, use_reentrant=False)
        kl_total, ce_total = kl_total + kl, ce_total + ce
    return kl_total, ce_total, n_tokens


def _distill_chunk(head, inputs, teacher_logits, targets, temperature: float):
    logits = head(inputs).float()
    student_logp = F.log_softmax(logits / temperature, dim=-1)
    teacher_logp = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(student_logp, teacher_logp, log_target=True, reduction="sum") * temperature ** 2
    return kl, F.cross_entropy(logits, targets, reduction="sum")


def _module_ce_sum(head, inputs, targets):
    return F.cross_entropy(head(inputs).float(), targets, reduction="sum")


def _plain_linear(module: torch.nn.Module) -> bool:
    return type(module) is torch.nn.Linear


def _liger_loss():
    try:
        from liger_kernel.transformers.fused_linear_cross_entropy import (
            LigerFusedLinearCrossEntropyLoss,
        )
    except ImportError:
        return None
    return LigerFusedLinearCrossEntropyLoss(reduction="sum")


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Cross-entropy of `inputs @ weight.T + bias`, summed, computed chunk by chunk.

    The gradients are computed during the forward pass (softmax minus one-hot, per chunk) and
    kept; backward only scales them. This costs the same three matmuls as an unchunked step but
    holds at most one chunk of logits at a time — the approach of Liger's fused kernel, in torch.
    """

    @staticmethod
    def forward(ctx, inputs, weight, bias, targets, chunk_size):
        grad_inputs = torch.zeros_like(inputs) if inputs.requires_grad else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if weight.requires_grad else None
        needs_bias = bias is not None and bias.requires_grad
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if needs_bias else None
        total = torch.zeros((), dtype=torch.float32, device=inputs.device)
        for start in range(0, inputs.shape[0], chunk_size):
            chunk, chunk_targets = inputs[start:start + chunk_size], targets[start:start + chunk_size]
            logits = F.linear(chunk, weight, bias).float()
            log_z = torch.logsumexp(logits, dim=-1)
            total += (log_z - logits.gather(1, chunk_targets[:, None]).squeeze(1)).sum()
            grad_logits = torch.exp(logits - log_z[:, None])
            grad_logits[torch.arange(len(chunk_targets), device=chunk.device), chunk_targets] -= 1.0
            if grad_inputs is not None:
                grad_inputs[start:start + chunk_size] = (grad_logits.to(weight.dtype) @ weight).to(inputs.dtype)
            if grad_weight is not None:
                grad_weight += grad_logits.T @ chunk.float()
            if grad_bias is not None:
                grad_bias += grad_logits.sum(0)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        if grad_bias is not None:
            grad_bias = grad_bias.to(bias.dtype)
        ctx.save_for_backward(*(g if g is not None else torch.empty(0) for g in (grad_inputs, grad_weight, grad_bias)))
        ctx.has_grad = (grad_inputs is not None, grad_weight is not None, grad_bias is not None)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grads = [g * grad_output.to(g.dtype) if has else None for g, has in zip(ctx.saved_tensors, ctx.has_grad)]
        grad_inputs, grad_weight, grad_bias = grads
        return grad_inputs, grad_weight, grad_bias, None, None
