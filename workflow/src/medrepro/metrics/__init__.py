"""Evaluation metrics as small pure NumPy functions (inputs validated, NaN raises)."""

from __future__ import annotations

from medrepro.metrics.landmarks import (
    combine_rmse,
    mean_radial_error,
    pooled_rmse,
    radial_errors,
    rmse_per_landmark,
    success_detection_rate,
)

__all__ = [
    "combine_rmse",
    "mean_radial_error",
    "pooled_rmse",
    "radial_errors",
    "rmse_per_landmark",
    "success_detection_rate",
]
