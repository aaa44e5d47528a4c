"""Training losses.

- :mod:`medrepro.losses.landmarks`: coordinate regression loss (VGG regressor) and heatmap loss
  with supervision on every hourglass stack.
"""

from __future__ import annotations

from medrepro.losses.landmarks import CoordinateLoss, HeatmapLoss, coordinate_loss, heatmap_loss

__all__ = ["CoordinateLoss", "HeatmapLoss", "coordinate_loss", "heatmap_loss"]
