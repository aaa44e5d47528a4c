"""LowRes losses: dpipe's per-sample Dice and the adaptive weighted BCE, on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medrepro.losses.segmentation import (
    adaptive_pos_weight,
    adaptive_weighted_bce,
    soft_dice_per_sample,
)

BIG = 50.0  # sigmoid(50) == 1 and sigmoid(-50) == 0 in float32


def _logits(mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask > 0, BIG, -BIG)


def test_dice_perfect_prediction_is_zero() -> None:
    target = torch.zeros(2, 1, 4, 4, 4)
    target[:, :, 1:3, 1:3, 1:3] = 1
    assert float(soft_dice_per_sample(_logits(target), target)) == pytest.approx(0.0, abs=1e-6)


def test_dice_disjoint_is_one() -> None:
    target = torch.zeros(1, 1, 4, 4, 4)
    target[..., :2] = 1
    pred = 1 - target
    assert float(soft_dice_per_sample(_logits(pred), target)) == pytest.approx(1.0, abs=1e-6)


def test_dice_squared_denominator_hand_case() -> None:
    # logits 0 -> p = 0.5 everywhere on 8 voxels, 2 of them foreground:
    # 2 * (2 * 0.5) / (8 * 0.25 + 2) = 2 / 4 -> loss 0.5 (a linear denominator would give 1 - 2/10)
    target = torch.zeros(1, 1, 2, 2, 2)
    target[0, 0, 0, 0, :] = 1
    loss = soft_dice_per_sample(torch.zeros_like(target), target)
    assert float(loss) == pytest.approx(0.5, abs=1e-6)


def test_dice_is_mean_of_per_sample_losses() -> None:
    # item 0 perfect (loss 0), item 1 empty target and empty prediction (0 / eps -> loss 1)
    target = torch.zeros(2, 1, 2, 2, 2)
    target[0, 0, 0] = 1
    loss = soft_dice_per_sample(_logits(target), target)
    assert float(loss) == pytest.approx(0.5, abs=1e-6)


def test_dice_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ"):
        soft_dice_per_sample(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 1))


def test_pos_weight_value_and_detached() -> None:
    # 4 elements, sigmoid = 0.5, 0.5, 0.5, 0.5 -> sum 2 -> (4 - 2) / 2 = 1
    logits = torch.zeros(1, 1, 1, 2, 2, requires_grad=True)
    w = adaptive_pos_weight(logits)
    assert float(w) == pytest.approx(1.0)
    assert not w.requires_grad
    # sigmoid(ln 3) = 0.75 on one element, 0 elsewhere (8 elements): sum 0.75 clamped to 1
    x = torch.full((1, 1, 2, 2, 2), -BIG)
    x[0, 0, 0, 0, 0] = math.log(3.0)
    assert float(adaptive_pos_weight(x)) == pytest.approx(7.0, rel=1e-5)
    x[0, 0, 1] = math.log(3.0)  # four more elements at 0.75 -> sum 0.75 * 5 = 3.75
    assert float(adaptive_pos_weight(x)) == pytest.approx((8 - 3.75) / 3.75, rel=1e-5)


def test_weighted_bce_matches_hand_formula() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0]).reshape(1, 1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0]).reshape(1, 1, 1, 2, 2)
    s = torch.sigmoid(logits)
    w = (4 - s.sum()) / s.sum()
    expected = -(w * target * torch.log(s) + (1 - target) * torch.log(1 - s)).mean()
    assert float(adaptive_weighted_bce(logits, target)) == pytest.approx(float(expected), 1e-5)
    # with pos_weight 1 it would be the plain BCE, which differs here
    plain = F.binary_cross_entropy_with_logits(logits, target)
    assert float(w) != pytest.approx(1.0)
    assert float(plain) != pytest.approx(float(expected))


def test_weighted_bce_confident_correct_is_near_zero_and_gradient_flows() -> None:
    target = torch.zeros(1, 1, 2, 2, 2)
    target[0, 0, 0, 0, 0] = 1
    logits = (_logits(target) / 5).requires_grad_(True)  # +-10
    loss = adaptive_weighted_bce(logits, target)
    assert float(loss.detach()) < 1e-3
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_weighted_bce_all_negative_prediction_is_finite() -> None:
    target = torch.ones(1, 1, 2, 2, 2)
    loss = adaptive_weighted_bce(torch.full((1, 1, 2, 2, 2), -BIG), target)
    # clamp: pos_weight = (8 - 1) / 1 = 7, BCE per voxel = 50 -> 350
    assert float(loss) == pytest.approx(350.0, rel=1e-4)
