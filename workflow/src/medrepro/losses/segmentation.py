"""Segmentation losses: BrainMaGe's batch-global soft Dice loss.

Thakur et al., BrainLes 2021 (paper 001); BrainMaGe ``trainer/lightning_networks.py`` trains with
``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)``, the sums running over the whole flattened
batch (every voxel of every item and channel together, not a mean of per-item Dice values).
"""

from __future__ import annotations

import torch

__all__ = ["dice_loss"]


def dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Soft Dice loss over the flattened batch (BrainMaGe's form).

    ``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)``: 0 for a perfect prediction, 1 when
    prediction and target do not overlap. An empty target with an empty prediction gives 0.

    Args:
        prob: probabilities in ``[0, 1]``, e.g. sigmoid outputs ``(N, 1, X, Y, Z)``.
        target: binary target of the same shape (any numeric dtype).
        eps: smoothing term added to numerator and denominator.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: ``prob`` and ``target`` shapes differ.
    """
    if prob.shape != target.shape:
        raise ValueError(f"prob {tuple(prob.shape)} and target {tuple(target.shape)} differ")
    p = prob.reshape(-1)
    t = target.reshape(-1).to(p.dtype)
    overlap = (p * t).sum()
    return 1.0 - (2.0 * overlap + eps) / (p.sum() + t.sum() + eps)
