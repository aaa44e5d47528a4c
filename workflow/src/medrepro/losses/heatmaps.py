"""Heatmap loss of the face landmark paper: the squared Frobenius norm per landmark.

Fu, Jiao, Suttie, Noble, MLMI 2020, Eq. 1: ``L_hm = (1 / K) sum_k ||H_k - Ĥ_k||_F^2`` per image,
averaged over the batch here. The squared norm sums over the heatmap pixels (SimpleBaselines'
``JointsMSELoss`` averages them and halves), so the loss scales with the Gaussian's footprint,
not with the map size: an all-zero prediction against a peak-1 target of ``sigma`` heatmap pixels
costs ``sum exp(-d^2 / sigma^2) ~ pi sigma^2`` (12.6 for sigma 2) per landmark.
"""

from __future__ import annotations

import torch

__all__ = ["heatmap_frobenius_loss"]


def heatmap_frobenius_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Batch mean of ``(1 / K) sum_k w_nk ||pred_nk - target_nk||_F^2``.

    Args:
        pred: ``(N, K, h, w)`` predicted heatmaps (any number of trailing spatial axes).
        target: same shape, Gaussian targets (peak 1).
        weight: optional ``(N, K)`` per-landmark weights (e.g. 0 for an invisible landmark,
            1 otherwise). The divisor stays ``K``: a weight of 0 removes the landmark's term
            without rescaling the others.

    Returns:
        Scalar tensor.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if pred.ndim < 3:
        raise ValueError(f"heatmaps must be (N, K, h, w), got {tuple(pred.shape)}")
    per_map = ((pred - target) ** 2).flatten(2).sum(dim=2)  # (N, K)
    if weight is not None:
        if tuple(weight.shape) != tuple(per_map.shape):
            raise ValueError(
                f"weight must be (N, K) = {tuple(per_map.shape)}, got {tuple(weight.shape)}"
            )
        per_map = per_map * weight.to(per_map.dtype)
    return per_map.mean(dim=1).mean()
