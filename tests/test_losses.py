"""Tests for medrepro.losses.landmarks."""

from __future__ import annotations

import pytest
import torch

from medrepro.losses import CoordinateLoss, HeatmapLoss, coordinate_loss, heatmap_loss


@pytest.mark.parametrize("kind", ["smooth_l1", "mse", "l1"])
def test_coordinate_loss_zero_for_perfect_prediction(kind: str) -> None:
    y = torch.rand(3, 12) * 2 - 1
    assert float(coordinate_loss(y, y.clone(), kind=kind)) == 0.0


def test_coordinate_loss_hand_computed() -> None:
    pred = torch.tensor([[0.0, 0.01, 0.5, -0.1]])
    target = torch.zeros(1, 4)
    # smooth L1, beta 0.02: |d| < beta -> 0.5 d^2 / beta, else |d| - beta / 2
    expected = (0.0 + 0.5 * 0.01**2 / 0.02 + (0.5 - 0.01) + (0.1 - 0.01)) / 4
    assert float(coordinate_loss(pred, target)) == pytest.approx(expected)
    assert float(coordinate_loss(pred, target, kind="mse")) == pytest.approx(
        (0.01**2 + 0.25 + 0.01) / 4
    )
    assert float(CoordinateLoss("l1")(pred, target)) == pytest.approx(0.61 / 4)
    with pytest.raises(ValueError, match="differ"):
        coordinate_loss(pred, torch.zeros(1, 3))


def test_heatmap_loss_zero_for_perfect_prediction() -> None:
    t = torch.rand(2, 4, 4, 4, 2)
    assert float(heatmap_loss([t.clone(), t.clone(), t.clone()], t)) == 0.0
    assert float(heatmap_loss(t.clone(), t, foreground_weight=10.0)) == 0.0


def test_heatmap_loss_hand_computed() -> None:
    target = torch.zeros(1, 1, 2, 1, 1)
    target[0, 0, 0] = 1.0
    p1 = torch.zeros_like(target)  # errors (1, 0): MSE 0.5
    p2 = torch.full_like(target, 0.5)  # errors (0.5, 0.5): MSE 0.25
    assert float(heatmap_loss([p1, p2], target)) == pytest.approx((0.5 + 0.25) / 2)
    # weights 1 + 3 t = (4, 1): p1 -> (4 * 1 + 0) / 2 = 2; p2 -> (4 * 0.25 + 0.25) / 2 = 0.625
    assert float(HeatmapLoss(foreground_weight=3.0)([p1, p2], target)) == pytest.approx(
        (2 + 0.625) / 2
    )


def test_heatmap_loss_gradients_reach_every_stack() -> None:
    target = torch.rand(1, 2, 4, 4, 4)
    preds = [torch.zeros_like(target, requires_grad=True) for _ in range(3)]
    heatmap_loss(preds, target).backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in preds)
    with pytest.raises(ValueError, match="differ"):
        heatmap_loss([torch.zeros(1, 2, 4, 4, 2)], target)
