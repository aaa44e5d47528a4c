"""Landmark losses: direct coordinate regression and stacked-hourglass heatmaps.

Vasiliev, Lachinov, Getmanskaya, GraphiCon 2020, Sec. 4.4: the VGG regressor outputs the 12
coordinates directly; the stacked hourglass is supervised "at the end of each network in the
stack" with auxiliary outputs. The exact loss functions are not given in the paper; the choices
below are reconstructions and are documented per function.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["COORDINATE_LOSSES", "coordinate_loss", "heatmap_loss", "CoordinateLoss", "HeatmapLoss"]

COORDINATE_LOSSES = ("smooth_l1", "mse", "l1")


def coordinate_loss(
    pred: torch.Tensor, target: torch.Tensor, kind: str = "smooth_l1", beta: float = 0.02
) -> torch.Tensor:
    """Mean loss between normalised coordinates (see ``vgg_regressor.encode_coordinates``).

    Default: smooth L1 (Huber) with ``beta = 0.02`` in normalised units, i.e. quadratic below
    about 1.3 voxels on a 128-voxel axis (0.6 on a 64-voxel axis) and L1 above: L1-like
    gradients keep pulling at small-but-clinically-relevant errors, where MSE gradients vanish,
    while staying smooth at zero. ``kind="mse"`` and ``"l1"`` are available.

    Args:
        pred: ``(N, 3 K)`` (or ``(N, K, 3)``) network outputs in [-1, 1] units.
        target: same shape as ``pred``.
        kind: ``"smooth_l1"``, ``"mse"`` or ``"l1"``.
        beta: smooth-L1 transition point (normalised units).

    Returns:
        Scalar mean over all coordinates.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, beta=beta)
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "l1":
        return F.l1_loss(pred, target)
    raise ValueError(f"unknown coordinate loss {kind!r}; expected one of {COORDINATE_LOSSES}")


def heatmap_loss(
    preds: Sequence[torch.Tensor] | torch.Tensor,
    target: torch.Tensor,
    foreground_weight: float = 0.0,
) -> torch.Tensor:
    """Mean over stacks of the (optionally foreground-weighted) voxel-wise MSE.

    ``L = (1 / S) sum_s mean_v w_v (p_sv - t_v)^2`` with ``w_v = 1 + foreground_weight * t_v``.
    With the default ``foreground_weight = 0`` this is plain MSE per stack (Newell et al.'s
    intermediate supervision, averaged rather than summed over stacks so the scale does not
    depend on ``n_stacks``). Gaussian targets are almost all background (a sigma = 2 blob covers
    ~0.1 % of a 64x64x32 heatmap), so plain MSE first drives the maps to zero; a
    ``foreground_weight`` of 10-100 up-weights voxels near the landmarks and speeds up early
    training on small budgets.

    Args:
        preds: one ``(N, K, X, Y, Z)`` tensor per stack (training-mode hourglass output), or a
            single tensor.
        target: ``(N, K, X, Y, Z)`` Gaussian heatmaps (peak 1).
        foreground_weight: extra weight proportional to the target value (>= 0).

    Returns:
        Scalar loss.
    """
    if isinstance(preds, torch.Tensor):
        preds = [preds]
    if len(preds) == 0:
        raise ValueError("heatmap_loss needs at least one prediction")
    if foreground_weight < 0:
        raise ValueError(f"foreground_weight must be >= 0, got {foreground_weight}")
    weight = 1.0 + foreground_weight * target if foreground_weight else None
    losses = []
    for p in preds:
        if p.shape != target.shape:
            raise ValueError(f"prediction {tuple(p.shape)} and target {tuple(target.shape)} differ")
        se = (p - target) ** 2
        losses.append((se * weight).mean() if weight is not None else se.mean())
    return torch.stack(losses).mean()


class CoordinateLoss(nn.Module):
    """Module form of :func:`coordinate_loss` (``kind``, ``beta`` fixed at construction)."""

    def __init__(self, kind: str = "smooth_l1", beta: float = 0.02) -> None:
        super().__init__()
        if kind not in COORDINATE_LOSSES:
            raise ValueError(
                f"unknown coordinate loss {kind!r}; expected one of {COORDINATE_LOSSES}"
            )
        self.kind = kind
        self.beta = beta

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return coordinate_loss(pred, target, kind=self.kind, beta=self.beta)


class HeatmapLoss(nn.Module):
    """Module form of :func:`heatmap_loss` (``foreground_weight`` fixed at construction)."""

    def __init__(self, foreground_weight: float = 0.0) -> None:
        super().__init__()
        self.foreground_weight = foreground_weight

    def forward(
        self, preds: Sequence[torch.Tensor] | torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        return heatmap_loss(preds, target, foreground_weight=self.foreground_weight)
