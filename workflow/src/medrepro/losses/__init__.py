"""Training losses.

- :mod:`medrepro.losses.landmarks`: coordinate regression loss (VGG regressor) and heatmap loss
  with supervision on every hourglass stack.
- :mod:`medrepro.losses.heatmaps`: the face landmark paper's squared Frobenius heatmap loss.
- :mod:`medrepro.losses.distillation`: cross-task distillation regularisers (KD, cosine).
"""

from __future__ import annotations

from medrepro.losses.distillation import cosine_feature_loss, kd_loss
from medrepro.losses.heatmaps import heatmap_frobenius_loss
from medrepro.losses.landmarks import CoordinateLoss, HeatmapLoss, coordinate_loss, heatmap_loss

__all__ = [
    "CoordinateLoss",
    "HeatmapLoss",
    "coordinate_loss",
    "heatmap_loss",
    "heatmap_frobenius_loss",
    "kd_loss",
    "cosine_feature_loss",
]
