"""Chunked losses equal their full-logit references, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tuning.loss import IGNORE_INDEX, causal_lm_loss_sum, distillation_loss_sums


def _inputs(seed: int = 0, *, bias: bool = False):
    torch.manual_seed(seed)
    hidden = torch.randn(3, 11, 16, requires_grad=True)
    head = torch.nn.Linear(16, 97, bias=bias)
    labels = torch.randint(0, 97, (3, 11))
    labels[0, :4] = IGNORE_INDEX
    labels[2, 7:] = IGNORE_INDEX
    return hidden, head, labels


def _reference_ce(hidden, head, labels):
    logits = head(hidden)[:, :-1].flatten(0, 1)
    return F.cross_entropy(logits, labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="sum")


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
@pytest.mark.parametrize("bias", [False, True])
def test_chunked_cross_entropy_equals_full_logits_value_and_gradients(chunk_size, bias):
    hidden, head, labels = _inputs(bias=bias)
    expected = _reference_ce(hidden, head, labels)
    expected_grads = torch.autograd.grad(expected, [hidden, *head.parameters()])
    loss, n = causal_lm_loss_sum(hidden, head, labels, chunk_size=chunk_size)
    grads = torch.autograd.grad(loss, [hidden, *head.parameters()])
    assert n == int((labels[:, 1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(loss, expected)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_chunked_cross_entropy_through_a_frozen_head_only_grads_the_hidden_states():
    hidden, head, labels = _inputs()
    head.requires_grad_(False)
    expected_grad, = torch.autograd.grad(_reference_ce(hidden, head, labels), [hidden])
    loss, _ = causal_lm_loss_sum(hidden, head, labels, chunk_size=4)
    grad, = torch.autograd.grad(loss, [hidden])
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6)


def test_chunked_cross_entropy_through_a_wrapped_head_equals_full_logits():
    hidden, head, labels = _inputs()
    wrapped = torch.nn.Sequential(head)  # stands for an adapted lm_head (not a plain Linear)
    expected = _reference_ce(hidden, head, labels)
    expected_grads = torch.autograd.grad(expected, [hidden, head.weight])
    loss, _ = causal_lm_loss_sum(hidden, wrapped, labels, chunk_size=4)
    grads = torch.autograd.grad(loss, [hidden, head.weight])
    torch.testing.assert_close(loss, expected)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_distillation_loss_equals_full_logit_kl_and_ce():
    hidden, head, labels = _inputs()
    torch.manual_seed(1)
    teacher_hidden, teacher_head = torch.randn(3, 11, 16), torch.nn.Linear(16, 97, bias=False)
    temperature = 2.0
    keep = labels[:, 1:] != IGNORE_INDEX
    student_logits, teacher_logits = head(hidden)[:, :-1][keep], teacher_head(teacher_hidden)[:, :-1][keep]
    expected_kl = F.kl_div(F.log_softmax(student_logits / temperature, -1), F.softmax(teacher_logits / temperature, -1),
                           reduction="sum") * temperature ** 2
    expected_ce = F.cross_entropy(student_logits, labels[:, 1:][keep], reduction="sum")
    expected_grad, = torch.autograd.grad(expected_kl + expected_ce, [hidden])
    kl, ce, n = distillation_loss_sums(hidden, head, teacher_hidden, teacher_head, labels,
                                       temperature=temperature, chunk_size=5)
    grad, = torch.autograd.grad(kl + ce, [hidden])
    assert n == int(keep.sum())
    torch.testing.assert_close(kl, expected_kl.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ce, expected_ce.detach())
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6)
