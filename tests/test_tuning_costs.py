"""What a strategy reports about itself: its own peak memory, and whether it converged."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from tuning.artifact import convergence
from tuning.memory import peak_memory, reset_peak_memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or torch.cuda.is_available(),
                    reason="the CPU window uses Linux's resident high-water mark")
def test_a_new_window_does_not_inherit_an_earlier_strategys_peak():
    reset_peak_memory()
    big = torch.ones(512 * 2**20 // 4)  # 512 MiB, touched
    earlier, kind = peak_memory()
    del big
    reset_peak_memory()
    own, kind = peak_memory()
    assert kind == "cpu_peak_rss"
    assert earlier - own > 400 * 2**20, (earlier, own)


def _manifest(before, curve, **extra):
    best = min((loss for _, loss in curve), default=None)
    return {"quality": {"dev_loss_before": before, "dev_loss_after": best, "dev_losses": curve}, **extra}


def test_training_whose_best_dev_loss_never_beat_the_start_did_not_converge():
    verdict = convergence(_manifest(5.89, [[10, 6.5], [20, 6.39], [30, 6.41]]))
    assert verdict["converged"] is False
    assert (verdict["dev_loss_before"], verdict["dev_loss_best"], verdict["dev_loss_final"]) == (5.89, 6.39, 6.41)
    assert "never fell below" in verdict["reason"]


def test_training_that_lowered_dev_loss_converged():
    assert convergence(_manifest(5.89, [[10, 5.5], [20, 5.2]]))["converged"] is True


def test_a_student_far_worse_than_its_teacher_did_not_converge():
    gap = {"student_vs_teacher": {"dev_ce_student": 9.4, "dev_ce_teacher": 2.1}}
    verdict = convergence(_manifest(15.4, [[10, 9.7]], **gap))
    assert verdict["converged"] is False
    assert f"{math.exp(9.4 - 2.1):.1f}x its teacher's" in verdict["reason"]
    close = {"student_vs_teacher": {"dev_ce_student": 2.5, "dev_ce_teacher": 2.1}}
    assert convergence(_manifest(15.4, [[10, 9.7]], **close))["converged"] is True


def test_without_a_dev_set_convergence_is_not_judged():
    assert convergence({"quality": {"dev_loss_before": None, "dev_losses": []}})["converged"] is None
