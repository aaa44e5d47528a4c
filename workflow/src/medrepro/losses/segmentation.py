"""Segmentation losses: BrainMaGe's batch-global soft Dice loss.

Thakur et al., BrainLes 2021 (paper 001); BrainMaGe ``trainer/lightning_networks.py`` trains with
``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)``, the sums running over the whole flattened
batch (every voxel of every item and channel together, not a mean of per-item Dice values).

LowRes (paper 003): deep-pipe's per-sample Dice loss with a squared denominator
(:func:`soft_dice_per_sample`) and the adaptive weighted BCE of its stage 1
(:func:`adaptive_weighted_bce`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dice_loss", "soft_dice_per_sample", "adaptive_pos_weight", "adaptive_weighted_bce"]


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


# --- LowRes (paper 003): dpipe's per-sample Dice loss and adaptive weighted BCE -----------------


def soft_dice_per_sample(
    logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """Soft Dice loss per sample with a squared denominator, averaged over the batch (dpipe's form).

    Shirokikh et al., J. Imaging 2021 (paper 003) train every network with deep-pipe's
    ``dice_loss``: for each item ``1 - 2 sum(p t) / (sum(p^2 + t^2) + eps)`` with ``p =
    sigmoid(logits)``, the sums running over the item's channels and voxels; the loss is the mean
    over the batch. A perfect prediction gives about 0, disjoint prediction and target give 1,
    and an empty target with an empty prediction gives 1 (no smoothing in the numerator).

    Args:
        logits: raw network outputs ``(N, C, D, H, W)`` (any shape with the batch first).
        target: binary target of the same shape (any numeric dtype).
        eps: added to the denominator only.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: ``logits`` and ``target`` shapes differ.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    p = torch.sigmoid(logits).reshape(logits.shape[0], -1)
    t = target.reshape(target.shape[0], -1).to(p.dtype)
    dice = 2.0 * (p * t).sum(dim=1) / ((p * p + t * t).sum(dim=1) + eps)
    return (1.0 - dice).mean()


def adaptive_pos_weight(logits: torch.Tensor, min_sum: float = 1.0) -> torch.Tensor:
    """The adaptive positive-class weight ``(N - sum sigma) / sum sigma`` of LowRes' stage 1.

    ``N`` counts every element of ``logits`` (the whole batch), ``sigma = sigmoid(logits)``,
    computed without gradient (detached): the weight rescales the loss but is not optimised.
    ``sum sigma`` is clamped below at ``min_sum`` (one voxel's worth of probability), so a network
    that predicts almost nothing gets at most ``N - 1`` instead of a division by zero.

    Returns:
        Scalar tensor (no grad).
    """
    with torch.no_grad():
        total = torch.sigmoid(logits.detach().float()).sum().clamp(min=min_sum)
        return (logits.numel() - total) / total


def adaptive_weighted_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits and an adaptive positive weight (LowRes stage 1).

    Paper 003 trains the 8x downsampled stage with "weighted cross-entropy"; the authors' code
    (deep-pipe ``weighted_cross_entropy_with_logits(adaptive=True)``) weighs positive voxels by
    ``pos_weight = (N - sum sigma) / sum sigma`` from the current predictions: the fewer voxels
    the network calls positive, the more a missed positive costs. Here ``pos_weight`` comes from
    :func:`adaptive_pos_weight` (detached, ``sum sigma`` clamped at 1; dpipe lets gradients flow
    through it and does not clamp). Mean over all elements.

    Args:
        logits: stage-1 logits ``(N, 1, D/8, H/8, W/8)``.
        target: binary target of the same shape (e.g. ``F.max_pool3d(mask, 8)``).

    Returns:
        Scalar tensor.

    Raises:
        ValueError: ``logits`` and ``target`` shapes differ.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    pos_weight = adaptive_pos_weight(logits).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(
        logits, target.to(logits.dtype), pos_weight=pos_weight, reduction="mean"
    )
